//! Entries trimmed from a stream (`MAXLEN ~`) before a group read them:
//! counted from Redis 7's `XINFO` counters and reported once.

use crate::conn::Conn;
use crate::reply;

/// Entries trimmed from the stream (`MAXLEN ~`) before the group read them
/// are lost to it without a trace in the replies of reads (in Python too):
/// a consumer that lags by more than about `MAXLEN` entries, or a group
/// whose consumers were all down while producers went on. Redis 7 keeps
/// the count: while the group's `last-delivered-id` is before the stream's
/// `recorded-first-entry-id` (the trimming went past the group), every entry
/// in the stream is still to be read, so `entries-added - entries-read -
/// length` entries were trimmed unread (in the group's lifetime). Warns
/// (when `report`) if that is more than `reported`; returns the count (to
/// warn only about new losses) and, when it warned, how many are new. Does
/// nothing on Redis before 7, when Redis cannot count (`entries-read` is
/// nil: a group that never read anything), or on any error.
pub(crate) async fn check_trimmed(
    conn: &Conn,
    stream: &str,
    group: &str,
    reported: i64,
    report: bool,
) -> (i64, Option<i64>) {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    pipe.cmd("XINFO").arg("STREAM").arg(stream);
    pipe.cmd("XINFO").arg("GROUPS").arg(stream);
    let Ok(mut replies) = conn.pipeline("XINFO", &pipe, conn.timeout()).await else {
        return (reported, None);
    };
    let (Some(groups), Some(info)) = (replies.pop(), replies.pop()) else {
        return (reported, None);
    };
    let info = reply::info_map(info);
    let Some(ours) = reply::info_list(groups)
        .into_iter()
        .find(|g| info_field(g, "name").and_then(reply::text).as_deref() == Some(group))
    else {
        return (reported, None);
    };
    let id = |m: &[(String, redis::Value)], k: &str| info_field(m, k).and_then(|v| reply::entry_id(v).ok());
    let int = |m: &[(String, redis::Value)], k: &str| info_field(m, k).and_then(reply::int);
    let (Some(first), Some(delivered)) = (id(&info, "recorded-first-entry-id"), id(&ours, "last-delivered-id")) else {
        return (reported, None); // before Redis 7
    };
    let (Some(added), Some(read), Some(length)) = (
        int(&info, "entries-added"),
        int(&ours, "entries-read"),
        int(&info, "length"),
    ) else {
        return (reported, None);
    };
    let lost = added - read - length;
    if delivered >= first || lost <= reported {
        return (reported, None);
    }
    let new = lost - reported;
    if report {
        tracing::warn!(stream = %stream, group = %group, lost = new, lost_in_all = lost,
            last_delivered_id = %delivered, first_entry_id = %first,
            "{new} entries were trimmed from the stream (MAXLEN, EVENT_BUS_REDIS_STREAM_MAX_LEN) before this \
             group read them: it lagged by more than the stream keeps, and they are lost to it \
             (raise EVENT_BUS_REDIS_STREAM_MAX_LEN, or add consumers)");
    }
    (lost, Some(new))
}

fn info_field<'a>(m: &'a [(String, redis::Value)], name: &str) -> Option<&'a redis::Value> {
    m.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::Purpose;
    use crate::settings::RedisConfig;

    #[tokio::test]
    async fn entries_trimmed_before_the_group_read_them_are_reported_once() {
        let url = std::env::var("EVENT_BUS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
        let config = RedisConfig::new(url).expect("url");
        let client = redis::Client::open(config.url()).expect("client");
        let conn = Conn::open(&client, &config, Purpose::Commands).expect("conn");
        let stream = format!("trim-check-{}", std::process::id());
        let run = |c: &redis::Cmd| {
            let (conn, c) = (conn.clone(), c.clone());
            async move { conn.query("test", &c).await.expect("command") }
        };
        let add = |n: usize| {
            let run = &run;
            let stream = stream.clone();
            async move {
                for i in 0..n {
                    run(redis::cmd("XADD")
                        .arg(&stream)
                        .arg("MAXLEN")
                        .arg(3)
                        .arg("*")
                        .arg("n")
                        .arg(i))
                    .await;
                }
            }
        };
        let read = |n: usize| {
            run(redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg("g")
                .arg("c")
                .arg("COUNT")
                .arg(n)
                .arg("STREAMS")
                .arg(&stream)
                .arg(">"))
        };
        run(redis::cmd("DEL").arg(&stream)).await;
        run(redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&stream)
            .arg("g")
            .arg("0")
            .arg("MKSTREAM"))
        .await;
        add(2).await;
        read(2).await;
        assert_eq!(
            check_trimmed(&conn, &stream, "g", 0, true).await,
            (0, None),
            "nothing lost yet"
        );
        // 10 more, 3 kept: the 7 the group had not read are lost.
        add(10).await;
        let (reported, new) = check_trimmed(&conn, &stream, "g", 0, true).await;
        assert_eq!((reported, new), (7, Some(7)));
        assert_eq!(
            check_trimmed(&conn, &stream, "g", reported, true).await,
            (7, None),
            "reported once"
        );
        // Past the gap, then behind again: 2 unread + 5 new, 3 kept: 4 more lost.
        read(1).await;
        assert_eq!(check_trimmed(&conn, &stream, "g", reported, true).await, (7, None));
        add(5).await;
        assert_eq!(check_trimmed(&conn, &stream, "g", reported, true).await, (11, Some(4)));
        // A group that read everything has lost nothing.
        run(redis::cmd("XGROUP").arg("CREATE").arg(&stream).arg("h").arg("$")).await;
        assert_eq!(check_trimmed(&conn, &stream, "h", 0, true).await.1, None);
        run(redis::cmd("DEL").arg(&stream)).await;
    }
}

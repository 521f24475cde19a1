//! Coalescing of concurrent publishes into pipelines.
//!
//! Every `XADD` goes through a bounded queue. [`LANES`] tasks take turns
//! at it: a lane takes whatever is queued (up to [`MAX_BATCH`] commands),
//! sends it as one pipeline (one write, one round trip) and answers each
//! caller with the reply to its own command: its entry id, or its own
//! error. While one lane waits for Redis, another gathers the next
//! pipeline. A caller returns only once Redis answered its command (or the
//! command timeout passed); a full queue makes callers wait for room (back
//! pressure), it never grows without bound.
//!
//! On plain TCP each lane is a connection of its own ([`RawConn`]): the
//! commands are packed by their callers, written as they are and the
//! replies read in place. Otherwise (TLS, Unix sockets) the pipelines go
//! through the shared connection of the `redis` crate ([`crate::raw`] says
//! why both exist).
//!
//! One caller's publishes keep their order (each waits for the previous
//! one); publishes of concurrent callers are in no particular order, as
//! without the queue.

use std::sync::Arc;
use std::time::Duration;

use openedx_events::bus::delayed::deadline_after;
use openedx_events::bus::transport::TransportError;
use redis::{Cmd, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::conn::Conn;
use crate::error::{no_reply, server_error};
use crate::raw::{Packer, RawConn};
use crate::reply;
use crate::resp::{Cursor, Item};
use crate::settings::RedisConfig;

/// At most this many commands per pipeline.
pub(crate) const MAX_BATCH: usize = 256;
/// At most this many pipelines on the wire at once (and, on plain TCP,
/// connections opened for publishing, as they are needed). Two keep Redis
/// busy while the next pipeline is gathered; more make smaller pipelines
/// (more writes and wake-ups for the same work).
pub(crate) const LANES: usize = 2;
/// A pipeline is cut after the command that takes it over this many bytes
/// (large entries: the packed pipeline is one more copy of them).
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Commands queued for the lanes before callers have to wait.
const QUEUE: usize = 2 * MAX_BATCH;

/// A command ready for a lane.
pub(crate) enum Packed {
    /// RESP bytes, for a [`RawConn`].
    Raw(Vec<u8>),
    /// A command of the `redis` crate.
    Cmd(Cmd),
}

/// Builds a [`Packed`] command argument by argument.
pub(crate) enum Builder {
    Raw(Packer),
    Cmd(Cmd),
}

impl Builder {
    /// Add an argument.
    pub(crate) fn arg(&mut self, a: &[u8]) {
        match self {
            Builder::Raw(p) => p.arg(a),
            Builder::Cmd(c) => {
                c.arg(a);
            }
        }
    }

    /// The command.
    pub(crate) fn done(self) -> Packed {
        match self {
            Builder::Raw(p) => Packed::Raw(p.into_bytes()),
            Builder::Cmd(c) => Packed::Cmd(c),
        }
    }
}

/// One queued command and where its reply goes, by when.
struct Job {
    cmd: Packed,
    size: usize,
    /// The caller's command timeout ends then: the job is answered by then
    /// (a timeout if Redis has not answered), without a timer per call.
    deadline: Instant,
    reply: oneshot::Sender<Result<String, TransportError>>,
}

/// The lanes are gone (the runtime they were started on shut down).
pub(crate) struct Gone;

/// The queue to the publishing lanes.
pub(crate) struct Publisher {
    queue: mpsc::Sender<Job>,
    raw: bool,
    timeout: Duration,
}

impl Publisher {
    /// Start the lanes on the current runtime.
    pub(crate) fn start(conn: Conn, client: &redis::Client, config: &RedisConfig) -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE);
        let jobs = Arc::new(tokio::sync::Mutex::new(jobs));
        let timeout = conn.timeout();
        let raw = RawConn::new(client, config).is_some();
        for _ in 0..LANES {
            let lane = match RawConn::new(client, config) {
                Some(conn) => Lane::Raw {
                    conn: Box::new(conn),
                    packed: Vec::new(),
                },
                None => Lane::Managed(conn.clone()),
            };
            tokio::spawn(run_lane(lane, jobs.clone(), timeout));
        }
        Publisher { queue, raw, timeout }
    }

    /// A builder for a command of `args` arguments and about `size` bytes.
    pub(crate) fn builder(&self, args: usize, size: usize) -> Builder {
        if self.raw {
            Builder::Raw(Packer::new(args, size))
        } else {
            Builder::Cmd(Cmd::with_capacity(args, size))
        }
    }

    /// Send `cmd` (an `XADD`) in the next pipeline and wait for its reply
    /// (the entry id), at most the command timeout (waiting for room in the
    /// queue included). `size` is about the bytes of the command.
    ///
    /// The time limit is kept without a timer per call: the job carries its
    /// deadline, and a pipeline is given the time left to its first job
    /// (the oldest), whose deadline is never later than those of the jobs
    /// queued after it; a job whose deadline passed while it waited for a
    /// free lane is answered with a timeout instead of being sent.
    pub(crate) async fn call(&self, cmd: Packed, size: usize) -> Result<Result<String, TransportError>, Gone> {
        let deadline = Instant::from_std(deadline_after(Instant::now().into_std(), self.timeout));
        let (reply, answer) = oneshot::channel();
        let job = Job {
            cmd,
            size,
            deadline,
            reply,
        };
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(job)) => {
                // The queue is full: wait for room, within the deadline.
                match tokio::time::timeout_at(deadline, self.queue.send(job)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Err(Gone),
                    Err(_) => return Ok(Err(no_reply("", self.timeout))),
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(Gone),
        }
        Ok(answer.await.unwrap_or_else(|_| {
            Err(TransportError::connection(
                "the Redis publishing lane stopped before the reply came",
            ))
        }))
    }
}

/// One of the [`LANES`]: a task that takes what is queued and sends it as
/// one pipeline, then waits for the replies; the lanes take turns at the
/// queue, so while one waits for Redis another gathers the next pipeline.
enum Lane {
    /// A connection of our own and the buffer its pipelines are packed in.
    Raw { conn: Box<RawConn>, packed: Vec<u8> },
    /// The shared connection of the `redis` crate.
    Managed(Conn),
}

async fn run_lane(mut lane: Lane, jobs: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>, timeout: Duration) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let n = jobs.lock().await.recv_many(&mut batch, MAX_BATCH).await;
        if n == 0 {
            return; // every Publisher is gone
        }
        let jobs = std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH));
        match &mut lane {
            Lane::Raw { conn, packed } => send_raw(conn, packed, jobs, timeout).await,
            Lane::Managed(conn) => send_managed(conn, jobs, timeout).await,
        }
    }
}

/// The jobs of a batch, cut into pipelines at [`MAX_BATCH_BYTES`]; jobs
/// whose caller went away are not sent, nor those whose deadline passed
/// while they waited (they are answered with a timeout).
fn pipelines(batch: Vec<Job>, timeout: Duration) -> Vec<Vec<Job>> {
    let mut out = Vec::with_capacity(1);
    let mut current = Vec::with_capacity(batch.len());
    let mut bytes = 0;
    let now = Instant::now();
    for job in batch {
        if job.reply.is_closed() {
            continue;
        }
        if job.deadline <= now {
            let _ = job.reply.send(Err(no_reply("", timeout)));
            continue;
        }
        bytes += job.size;
        current.push(job);
        if bytes >= MAX_BATCH_BYTES {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The time left to the first (oldest) job of a pipeline.
fn time_left(jobs: &[Job]) -> Duration {
    let first = jobs.iter().map(|j| j.deadline).min().unwrap_or_else(Instant::now);
    first.saturating_duration_since(Instant::now())
}

/// Send pipelines on a connection of our own.
async fn send_raw(conn: &mut RawConn, packed: &mut Vec<u8>, batch: Vec<Job>, timeout: Duration) {
    for jobs in pipelines(batch, timeout) {
        let limit = time_left(&jobs);
        packed.clear();
        if packed.capacity() > MAX_BATCH_BYTES * 2 {
            packed.shrink_to(MAX_BATCH_BYTES);
        }
        let mut replies = Vec::with_capacity(jobs.len());
        for job in jobs {
            match job.cmd {
                Packed::Raw(b) => {
                    packed.extend_from_slice(&b);
                    replies.push(job.reply);
                }
                Packed::Cmd(_) => {
                    let _ = job
                        .reply
                        .send(Err(TransportError::other("a command of the wrong kind")));
                }
            }
        }
        let secret = conn.secret().clone();
        let bytes = match conn.call("", packed, replies.len(), limit).await {
            Ok(bytes) => bytes,
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
                continue;
            }
        };
        let mut cursor = Cursor::new(bytes);
        for reply in replies {
            let mut whole = cursor.clone();
            let answer = match cursor.next_item() {
                Ok(Item::Bulk(id)) | Ok(Item::Status(id)) => Ok(String::from_utf8_lossy(id).into_owned()),
                Ok(Item::Error(text)) => Err(server_error("", text, &secret)),
                Ok(other) => {
                    // Not an id (an array's elements are skipped with it).
                    let _ = whole.skip();
                    cursor = whole;
                    Err(TransportError::other(format!(
                        "Redis replied with {}, not an entry id",
                        crate::resp::describe(&other)
                    )))
                }
                Err(e) => Err(TransportError::other(e.to_string())),
            };
            let _ = reply.send(answer);
        }
    }
}

/// Send pipelines on the shared connection of the `redis` crate.
async fn send_managed(conn: &Conn, batch: Vec<Job>, timeout: Duration) {
    for jobs in pipelines(batch, timeout) {
        let limit = time_left(&jobs);
        let mut pipe = redis::Pipeline::with_capacity(jobs.len());
        pipe.ignore_errors();
        let mut replies = Vec::with_capacity(jobs.len());
        for job in jobs {
            match job.cmd {
                Packed::Cmd(c) => {
                    pipe.add_command(c);
                    replies.push(job.reply);
                }
                Packed::Raw(_) => {
                    let _ = job
                        .reply
                        .send(Err(TransportError::other("a command of the wrong kind")));
                }
            }
        }
        match conn.pipeline("", &pipe, limit).await {
            Ok(values) if values.len() == replies.len() => {
                for (value, reply) in values.into_iter().zip(replies) {
                    let answer = match value {
                        Value::ServerError(e) => Err(conn.error("", &e.into())),
                        other => reply::into_text(other).map_err(|v| {
                            TransportError::other(format!("Redis replied with {}, not an entry id", reply::shape(&v)))
                        }),
                    };
                    let _ = reply.send(answer);
                }
            }
            Ok(values) => {
                let e = TransportError::other(format!(
                    "Redis replied to a pipeline of {} commands with {} replies",
                    replies.len(),
                    values.len()
                ));
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

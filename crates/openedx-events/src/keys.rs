//! Opaque keys: the string identifiers Open edX gives to courses, blocks and
//! content libraries, such as `course-v1:edX+DemoX+2024` or
//! `lb:MITx:physics:problem:p1`.
//!
//! On the event bus they travel as plain Avro strings. The newtypes in this
//! module check that text against the grammar of the Python parsers
//! (`edx-opaque-keys`, plus `edx-ccx-keys` for CCX courses), so that a malformed
//! key becomes an [`InvalidKeyError`] instead of a surprise for a consumer.
//! A key keeps its original text: parsing validates, it never normalizes.
//!
//! Where the Python grammar is unclear, these parsers accept: refusing a key
//! that a Python producer could legitimately send is worse than letting an odd
//! one through. Python's Unicode `\w` is approximated by
//! [`char::is_alphanumeric`] or `_`, which is slightly wider.
//!
//! ```
//! use openedx_events::keys::{CourseKey, UsageKey};
//!
//! let course: CourseKey = "course-v1:edX+DemoX+Demo_Course".parse()?;
//! assert_eq!(course.as_str(), "course-v1:edX+DemoX+Demo_Course");
//! assert!(UsageKey::parse("block-v1:edX+DemoX+Demo_Course+type@video+block@v1").is_ok());
//! assert!(CourseKey::parse("course-v1:edX+Demo X+2024").is_err());
//! # Ok::<(), openedx_events::keys::InvalidKeyError>(())
//! ```

use std::fmt;
use std::str::FromStr;

use crate::types::CustomType;

/// A string that is not a valid opaque key of the expected type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {key_type} {input:?}: {reason}")]
pub struct InvalidKeyError {
    /// The Python class name of the expected key type, e.g. `CourseKey`.
    pub key_type: &'static str,
    /// The rejected text.
    pub input: String,
    /// Which part of the text is wrong.
    pub reason: String,
}

/// Internal validation result: the error is the human-readable reason.
type Check = Result<(), String>;

/// Defines the key newtypes; each `$name` is also a [`CustomType`] variant, and
/// `$example` a valid key used in the generated `parse` doctest.
macro_rules! opaque_keys {
    ($($(#[$doc:meta])* $name:ident = $example:literal;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Validates `s` and wraps it unchanged.
            ///
            /// ```
            #[doc = concat!("use openedx_events::keys::", stringify!($name), ";")]
            #[doc = concat!("let key = ", stringify!($name), "::parse(", stringify!($example), ").unwrap();")]
            #[doc = concat!("assert_eq!(key.as_str(), ", stringify!($example), ");")]
            #[doc = concat!("assert!(", stringify!($name), "::parse(\"not-a-key\").is_err());")]
            /// ```
            pub fn parse(s: &str) -> Result<Self, InvalidKeyError> {
                Self::try_from(s.to_owned())
            }
            /// The key text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
            /// The key text, by value.
            pub fn into_string(self) -> String {
                self.0
            }
        }
        impl FromStr for $name {
            type Err = InvalidKeyError;
            fn from_str(s: &str) -> Result<Self, InvalidKeyError> {
                Self::parse(s)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl TryFrom<String> for $name {
            type Error = InvalidKeyError;
            fn try_from(s: String) -> Result<Self, InvalidKeyError> {
                validate(CustomType::$name, &s).map(|()| Self(s))
            }
        }
        impl TryFrom<&str> for $name {
            type Error = InvalidKeyError;
            fn try_from(s: &str) -> Result<Self, InvalidKeyError> {
                Self::parse(s)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = String::deserialize(deserializer)?;
                Self::try_from(s).map_err(serde::de::Error::custom)
            }
        }
    )*};
}

opaque_keys! {
    /// A course key (`opaque_keys.edx.keys.CourseKey`): `course-v1:ORG+COURSE+RUN`
    /// with optional `branch@`/`version@` parts, a legacy `library-v1:` key, a CCX
    /// key (`ccx-v1:`), or the deprecated `ORG/COURSE/RUN` form.
    CourseKey = "course-v1:edX+DemoX+Demo_Course";
    /// A CCX course key (`ccx_keys.locator.CCXLocator`), `ccx-v1:ORG+COURSE+RUN+ccx@ID`.
    CcxLocator = "ccx-v1:edX+DemoX+2024+ccx@3";
    /// A usage key (`opaque_keys.edx.keys.UsageKey`): `block-v1:`, `ccx-block-v1:`,
    /// `lib-block-v1:`, `lb:`, `location:`, `aside-usage-v1/v2:`, or the deprecated
    /// `i4x://ORG/COURSE/TYPE/NAME` form.
    UsageKey = "block-v1:edX+DemoX+2024+type@html+block@intro";
    /// A v2 content library key, `lib:ORG:SLUG`.
    LibraryLocatorV2 = "lib:MITx:physics";
    /// A block in a v2 content library, `lb:ORG:LIB:TYPE:ID`.
    LibraryUsageLocatorV2 = "lb:MITx:physics:problem:p1";
    /// A collection in a v2 content library, `lib-collection:ORG:LIB:ID`.
    LibraryCollectionLocator = "lib-collection:MITx:physics:c1";
    /// A container (unit, section...) in a v2 content library, `lct:ORG:LIB:TYPE:ID`.
    LibraryContainerLocator = "lct:MITx:physics:unit:u1";
}

/// Check that `s` is a valid key of `kind`. [`CustomType::DateTime`] and
/// [`CustomType::Uuid`] are not keys and always pass here.
pub fn validate(kind: CustomType, s: &str) -> Result<(), InvalidKeyError> {
    let check = || match kind {
        CustomType::CourseKey => check_course_key(s),
        CustomType::CcxLocator if !s.starts_with("ccx-v1:") => Err("expected ccx-v1:".into()),
        CustomType::CcxLocator => check_course_key(s),
        CustomType::UsageKey => usage_key(s, 0),
        CustomType::LibraryLocatorV2 => library_parts::<2>(s, "lib").map(|_| ()),
        CustomType::LibraryUsageLocatorV2 => check_library_usage_v2(s),
        CustomType::LibraryCollectionLocator => {
            let [_, _, id] = library_parts::<3>(s, "lib-collection")?;
            field("collection id", id, is_slug_char)
        }
        CustomType::LibraryContainerLocator => {
            let [_, _, container_type, id] = library_parts::<4>(s, "lct")?;
            field("container type", container_type, is_ascii_field_char)?;
            field("container id", id, is_slug_char)
        }
        CustomType::DateTime | CustomType::Uuid => Ok(()),
    };
    check().map_err(|reason| InvalidKeyError {
        key_type: kind.python_name(),
        input: s.to_owned(),
        reason,
    })
}

// Character classes of the Python grammar.
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}
fn is_locator_char(c: char) -> bool {
    is_word(c) || matches!(c, '-' | '~' | '.' | ':')
}
fn is_deprecated_id_char(c: char) -> bool {
    is_locator_char(c) || c == '%'
}
fn is_slash_part_char(c: char) -> bool {
    is_word(c) || matches!(c, '.' | '%' | '-')
}
fn is_slug_char(c: char) -> bool {
    is_word(c) || matches!(c, '-' | '.')
}
fn is_ascii_field_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// `value` must be non-empty and made only of `allowed` characters.
fn field(what: &str, value: &str, allowed: impl Fn(char) -> bool) -> Check {
    match value.chars().find(|&c| !allowed(c)) {
        _ if value.is_empty() => Err(format!("{what} is empty")),
        Some(c) => Err(format!("{what} {value:?} contains {c:?}")),
        None => Ok(()),
    }
}

/// Splits `s` at every `sep`, expecting exactly `N` parts.
fn split_exact<const N: usize>(s: &str, sep: char) -> Option<[&str; N]> {
    s.split(sep).collect::<Vec<_>>().try_into().ok()
}

/// How many plain ids a locator needs without a version, and how they read.
type Ids = (usize, &'static str);
const COURSE: Ids = (3, "ORG+COURSE+RUN");
const LIBRARY: Ids = (2, "ORG+LIBRARY");

/// Tagged parts of a `+`-separated locator, in the only order they may appear.
const TAGS: [&str; 5] = ["branch", "version", "ccx", "type", "block"];

/// Checks `[ORG+COURSE[+RUN]][+branch@B][+version@V][+ccx@N][+type@T][+block@ID]`
/// and returns the block type and id. `ccx` selects the edx-ccx-keys dialect
/// (`ccx@` required, case-insensitive tags); without a version, at least
/// `need.0` plain ids are needed ([`COURSE`] or [`LIBRARY`]).
fn split_locator(rest: &str, ccx: bool, need: Ids) -> Result<[Option<&str>; 2], String> {
    let (mut ids, mut next_tag, mut version, mut has_ccx) = (0, 0, false, false);
    let mut block = [None, None];
    let block_id_char = |c| is_locator_char(c) || (c == '%' && !ccx);
    for token in rest.split('+').filter(|_| !rest.is_empty()) {
        let Some((tag, value)) = token.split_once('@') else {
            if next_tag > 0 || ids == 3 {
                return Err(format!("unexpected part {token:?}"));
            }
            field("id part", token, is_locator_char)?;
            ids += 1;
            continue;
        };
        let same = |t: &&str| match ccx {
            true => t.eq_ignore_ascii_case(tag),
            false => *t == tag && *t != "ccx",
        };
        next_tag = match TAGS.iter().position(same) {
            Some(i) if i >= next_tag => i + 1,
            Some(_) => return Err(format!("part {tag}@ is repeated or out of order")),
            None => return Err(format!("unknown part {tag:?}@")),
        };
        match next_tag - 1 {
            0 => field("branch", value, is_locator_char)?,
            1 => version = check_version(value, ccx).map(|()| true)?,
            2 => has_ccx = field("ccx id", value, char::is_numeric).map(|()| true)?,
            3 => block[0] = field("block type", value, is_locator_char).map(|()| Some(value))?,
            _ => block[1] = field("block id", value, block_id_char).map(|()| Some(value))?,
        }
    }
    if ccx && !has_ccx {
        return Err("missing ccx@ part".into());
    }
    if ids == 1 || (ids < need.0 && !version) {
        return Err(format!("expected {} or a version@ part", need.1));
    }
    Ok(block)
}

/// A version is a MongoDB object id: 24 hex digits.
fn check_version(v: &str, any_case: bool) -> Check {
    let hex = |c: char| matches!(c, '0'..='9' | 'a'..='f') || (any_case && matches!(c, 'A'..='F'));
    match v.len() == 24 && v.chars().all(hex) {
        true => Ok(()),
        false => Err(format!("version {v:?} is not a 24-digit hex object id")),
    }
}

/// A usage locator needs a `block@` id (without `%`); `type@` is optional
/// except for legacy library blocks.
fn check_block([block_type, block_id]: [Option<&str>; 2], need_type: bool) -> Check {
    let id = block_id.ok_or("missing block@ part")?;
    field("block id", id, is_locator_char)?;
    match block_type {
        None if need_type => Err("missing type@ part".into()),
        _ => Ok(()),
    }
}

fn check_course_key(s: &str) -> Check {
    let Some((ns, rest)) = s.split_once(':') else {
        // The deprecated `ORG/COURSE/RUN` form; the run may be empty.
        let Some([org, course, run]) = split_exact(s, '/') else {
            return Err("expected a namespace such as course-v1: or ORG/COURSE/RUN".into());
        };
        field("org", org, is_slash_part_char)?;
        field("course", course, is_slash_part_char)?;
        if !run.is_empty() {
            field("run", run, is_slash_part_char)?;
        }
        return Ok(());
    };
    match ns {
        "course-v1" | "slashes" => split_locator(rest, false, COURSE).map(|_| ()),
        "library-v1" => split_locator(rest, false, LIBRARY).map(|_| ()),
        "ccx-v1" => split_locator(rest, true, COURSE).map(|_| ()),
        _ => Err(format!("unknown course key namespace {ns:?}")),
    }
}

/// Aside keys wrap another usage key; bound the nesting so recursion stays shallow.
const MAX_ASIDE_DEPTH: u32 = 8;

fn usage_key(s: &str, depth: u32) -> Check {
    if let Some(rest) = s.strip_prefix("i4x://") {
        return check_i4x(rest);
    }
    let Some((ns, rest)) = s.split_once(':') else {
        return Err("expected a namespace such as block-v1: or the i4x:// form".into());
    };
    match ns {
        _ if depth > MAX_ASIDE_DEPTH => Err("aside keys nested too deeply".into()),
        "block-v1" => check_block(split_locator(rest, false, COURSE)?, false),
        "ccx-block-v1" => check_block(split_locator(rest, true, COURSE)?, false),
        "lib-block-v1" => check_block(split_locator(rest, false, LIBRARY)?, true),
        "lb" => check_library_usage_v2(s),
        "location" => match split_exact::<5>(rest, '+') {
            Some(parts) => parts.iter().try_for_each(|p| field("part", p, is_locator_char)),
            None => Err("expected location:ORG+COURSE+RUN+TYPE+ID".into()),
        },
        "aside-usage-v1" => {
            // The first `::` separates the usage key from the aside type.
            let (usage, aside) = rest.split_once("::").unwrap_or((rest, ""));
            let usage = decode_aside_v1(usage)?;
            decode_aside_v1(aside)?;
            if usage.ends_with(':') || usage.starts_with("aside-usage-") {
                return Err("a v1 aside key cannot wrap an aside key or one ending in ':'".into());
            }
            usage_key(&usage, depth + 1)
        }
        "aside-usage-v2" => {
            // The last `::` separates them; single colons inside are `$`-escaped.
            let (usage, aside) = rest.rsplit_once("::").ok_or("missing '::'")?;
            decode_aside_v2(aside)?;
            usage_key(&decode_aside_v2(usage)?, depth + 1)
        }
        _ => Err(format!("unknown usage key namespace {ns:?}")),
    }
}

/// The deprecated `i4x://ORG/COURSE/TYPE/NAME[@REVISION]` location.
fn check_i4x(rest: &str) -> Check {
    let parts: Vec<&str> = rest.splitn(4, '/').collect();
    let &[org, course, block_type, tail] = parts.as_slice() else {
        return Err("expected i4x://ORG/COURSE/TYPE/NAME".into());
    };
    field("org", org, is_slash_part_char)?;
    field("course", course, is_slash_part_char)?;
    field("block type", block_type, |_| true)?;
    // NAME, then an optional `@REVISION`.
    tail.splitn(2, '@')
        .try_for_each(|p| field("block name or revision", p, is_deprecated_id_char))
}

/// Undoes the v1 aside escaping (`$$` for `$`, `$::` for `::`), which must be canonical.
fn decode_aside_v1(v: &str) -> Result<String, String> {
    let decoded = v.replace("$::", "::").replace("$$", "$");
    let canonical = decoded.replace('$', "$$").replace("::", "$::") == v;
    canonical
        .then_some(decoded)
        .ok_or_else(|| format!("ambiguous '$' escaping in {v:?}"))
}

/// Undoes the v2 aside escaping (`$$` for `$`, `$:` for `:`).
fn decode_aside_v2(v: &str) -> Result<String, String> {
    if v.replace("$:", "").contains(':') {
        return Err(format!("unescaped ':' in {v:?}"));
    }
    let colons = v.replace("$:", ":");
    // Every run of `$` must have even length once colons are decoded.
    if colons.split(|c| c != '$').any(|run| run.len() % 2 == 1) {
        return Err(format!("unescaped '$' in {v:?}"));
    }
    Ok(colons.replace("$$", "$"))
}

/// Splits a v2 library key into exactly `N` `:`-separated parts after `ns:`,
/// checking the org and library slug that every such key starts with.
fn library_parts<'a, const N: usize>(s: &'a str, ns: &str) -> Result<[&'a str; N], String> {
    let expected = || format!("expected {ns}: and {N} ':'-separated parts");
    let rest = s.strip_prefix(ns).and_then(|r| r.strip_prefix(':'));
    let parts: [&str; N] = rest.and_then(|r| split_exact(r, ':')).ok_or_else(expected)?;
    // Python checks these fields with `^...$`, which also lets one trailing '\n' through.
    let parts = parts.map(|p| p.strip_suffix('\n').unwrap_or(p));
    if let [org, slug, ..] = parts.as_slice() {
        field("org", org, is_ascii_field_char)?;
        field("library slug", slug, is_slug_char)?;
    }
    Ok(parts)
}

fn check_library_usage_v2(s: &str) -> Check {
    let [_, _, block_type, usage_id] = library_parts::<4>(s, "lb")?;
    field("block type", block_type, is_ascii_field_char)?;
    field("usage id", usage_id, is_slug_char)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::CustomType as T;

    fn check(kind: CustomType, accept: bool, keys: &[&str]) {
        for k in keys {
            assert_eq!(
                validate(kind, k).is_ok(),
                accept,
                "{kind} {k:?}: {:?}",
                validate(kind, k)
            );
        }
    }

    const V: &str = "519665f6223ebd6980884f2b";

    #[test]
    #[rustfmt::skip]
    fn course_keys() {
        check(T::CourseKey, true, &["course-v1:0RL+fbciOx+y1CJ", "course-v1:edX+DemoX+Demo_Course",
            "course-v1:edX+D+R", "ccx-v1:EXAJg+PEn5+OaBaa+ccx@701", "edX/DemoX/Demo_Course", "edX/DemoX/",
            "e%X/D.m-o/r_n", "course-v1:edX+DemoX+2014+branch@draft", &format!("course-v1:version@{V}"),
            &format!("course-v1:edX+DemoX+2014+branch@draft+version@{V}"), "slashes:edX+DemoX+2014",
            &format!("course-v1:edX+DemoX+version@{V}"), "course-v1:mit.eecs+6.002x+T2~2014:a",
            "course-v1:Ünï+cödé+rün", "library-v1:UniX+PhysicsProbs", &format!("library-v1:version@{V}"),
            "course-v1:edX+DemoX+2014+type@problem+block@p%1"]);
        check(T::CourseKey, false, &["", "not-a-key", "course-v1:", "course-v1:edX+", "course-v1:edX+DemoX",
            "course-v1:edX+Demo X+2014", "course-v1:edX+DemoX+2014+", "course-v1:edX++2014", "course-v1:a+b+c+d",
            "course-v1:edX+D+R+branch@x@y", "course-v1:edX+D+R+version@abc", "course-v1:edX+D+R+foo@bar",
            &format!("course-v1:edX+D+R+version@{}", V.to_uppercase()), "course-v1:edX+D+R+ccx@1",
            &format!("course-v1:edX+D+R+version@{V}+branch@b"), "course-v1:edX+D+R+BRANCH@b",
            "Course-v1:edX+D+R", "lib:MITx:reallyhardproblems", "block-v1:edX+D+R+type@a+block@b", "edX/DemoX",
            "edX/Demo X/2014", "edX//2014", "edX/DemoX/2014\n", "slashes:edX/DemoX/2014", "library-v1:UniX",
            "course-v1:edX+D+R\n"]);
    }

    #[test]
    #[rustfmt::skip]
    fn ccx_locators() {
        let keys = ["ccx-v1:EXAJg+PEn5+OaBaa+ccx@701", "ccx-v1:edX+D+R+branch@b+CCX@3", "ccx-v1:edX+D+R+ccx@٣",
            &format!("ccx-v1:VERSION@{}+ccx@1", V.to_uppercase())];
        check(T::CcxLocator, true, &keys);
        check(T::CourseKey, true, &keys);
        check(T::CcxLocator, false, &["", "ccx-v1:edX+D+R", "ccx-v1:edX+D+R+ccx@", "ccx-v1:edX+D+R+ccx@x1",
            "ccx-v1:ccx@1", "ccx-v1:edX+D+ccx@1", "course-v1:edX+D+R", "ccx-v1:edX+D+R+ccx@1+branch@b",
            "ccx-v1:edX+D+R+ccx@1+block@b%c"]);
    }

    /// Wraps a usage key in an `aside-usage-v2` key.
    fn aside_v2(key: &str) -> String {
        format!("aside-usage-v2:{}::t", key.replace('$', "$$").replace(':', "$:"))
    }

    #[test]
    #[rustfmt::skip]
    fn usage_keys() {
        let block = "block-v1:edX+D+R+type@html+block@b1";
        check(T::UsageKey, true, &[
            "block-v1:0QDlO+uyx+hAjSqygxw+type@problem+block@85775f4f85c82e36cd9f5ec5a9baa6c4",
            "block-v1:edX+DemoX+Demo_Course+type@video+block@abc123", "lb:Awyuh:auWv1zh8:problem:Ta5Vsq",
            "i4x://edX/DemoX/video/abc", "i4x://edX/DemoX/video/abc@draft", "i4x://edX/DemoX/vi deo/a:b%20c",
            &format!("block-v1:version@{V}+type@html+block@b1"), "block-v1:edX+DemoX+2014+block@b1",
            "block-v1:edX+DemoX+2014+branch@published+type@html+block@b1", "location:edX+DemoX+2014+html+b1",
            "lib-block-v1:UniX+Probs+type@problem+block@p1", "ccx-block-v1:edX+D+R+ccx@7+type@html+block@b1",
            &format!("aside-usage-v1:{block}::tagging"), &format!("aside-usage-v1:{block}"), &aside_v2(block),
            &aside_v2(&aside_v2("i4x://edX/DemoX/video/a:b"))]);
        check(T::UsageKey, false, &["", "not-a-key", "block-v1:edX+DemoX+2014", "course-v1:edX+D+R",
            "block-v1:edX+DemoX+type@html+block@b1", "block-v1:edX+D+R+type@html+block@a%20b",
            "block-v1:edX+D+R+block@b1+type@html", "lb:a:b:c", "lib-block-v1:UniX+Probs+block@p1",
            "i4x://edX/DemoX/video", "i4x://edX/DemoX/video/a b", "i4x://edX/DemoX/video/abc@",
            "location:edX+DemoX+2014+html", &format!("aside-usage-v2:{block}::t"), "aside-usage-v2:no-separator",
            &format!("aside-usage-v1:{block}::a$b"), &format!("aside-usage-v1:{block}:"),
            &format!("aside-usage-v1:aside-usage-v1:{block}::a::b"),
            // Python accepts any nesting; we stop at MAX_ASIDE_DEPTH.
            &(0..10).fold(block.to_owned(), |k, _| aside_v2(&k))]);
    }

    #[test]
    #[rustfmt::skip]
    fn library_v2_keys() {
        check(T::LibraryLocatorV2, true, &["lib:4hTxoF5:zbka8FRCzt", "lib:MITx:reallyhardproblems",
            "lib:MITx:física-1.0", "lib:a:b\n"]);
        check(T::LibraryLocatorV2, false, &["", "lib:onlyorg", "lib:a:b:c", "lib::slug", "lib:MÏTx:slug",
            "lib:MITx:sl ug", "lib:a:b\n\n", "course-v1:edX+DemoX+Demo_Course"]);
        check(T::LibraryUsageLocatorV2, true, &["lb:Awyuh:auWv1zh8:problem:Ta5Vsq", "lb:MITx:lib:html:ünï-1"]);
        check(T::LibraryUsageLocatorV2, false, &["lb:a:b:c", "lb:a:b:c:d:e", "lb:a:b:prøblem:d", "lb:a:b:c:"]);
        check(T::LibraryCollectionLocator, true, &["lib-collection:0zVZom:wUbbYrEqmS:CZ7Uw9xf"]);
        check(T::LibraryCollectionLocator, false, &["lib-collection:a:b", "lib-collection:a:b:c d", "lib:a:b"]);
        check(T::LibraryContainerLocator, true, &["lct:G8pSH4487q:1CiAhz:unit:ueQpBenQtY"]);
        check(T::LibraryContainerLocator, false, &["lct:a:b:unit", "lct:a:b:ünit:x", "lb:a:b:unit:x"]);
    }

    #[test]
    fn newtype_traits_and_errors() {
        let key = CourseKey::parse("course-v1:edX+DemoX+Demo_Course").unwrap();
        assert_eq!(key.to_string(), "course-v1:edX+DemoX+Demo_Course");
        assert_eq!(key.as_ref(), key.as_str());
        assert_eq!(key.clone().into_string().try_into(), Ok(key.clone()));
        assert_eq!("course-v1:edX+DemoX+Demo_Course".parse(), Ok(key.clone()));
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json, "\"course-v1:edX+DemoX+Demo_Course\"");
        assert_eq!(serde_json::from_str::<CourseKey>(&json).unwrap(), key);
        let err = serde_json::from_str::<LibraryLocatorV2>("\"lib:onlyorg\"").unwrap_err();
        assert!(err.to_string().starts_with("invalid LibraryLocatorV2 \"lib:onlyorg\""));

        let err = UsageKey::try_from("block-v1:edX+DemoX+2014").unwrap_err();
        let text = "invalid UsageKey \"block-v1:edX+DemoX+2014\": missing block@ part";
        assert_eq!((err.key_type, err.to_string()), ("UsageKey", text.to_owned()));
        let err = CourseKey::parse("course-v1:edX+Demo X+2014").unwrap_err();
        assert_eq!(err.reason, "id part \"Demo X\" contains ' '");
        assert_eq!(validate(T::DateTime, "whatever"), Ok(()));
        assert_eq!(validate(T::Uuid, ""), Ok(()));
    }
}

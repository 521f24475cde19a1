//! Random but valid sample data: for demos, benchmarks and the
//! compatibility tests (as openedx-events' tests generate samples per event).
//!
//! ```
//! use openedx_events::{catalog, sample};
//! let t = catalog::get("org.openedx.learning.course.enrollment.created.v1").unwrap();
//! let mut rng = sample::rng(7);
//! let mut data = sample::event_data(t, &mut rng);
//! t.validate_data(&mut data).unwrap();
//! let bytes = t.encode_data(&data).unwrap();
//! assert_eq!(t.decode_data(&bytes).unwrap(), data);
//! ```

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::avro::Schema;
use crate::event::EventType;
use crate::types::{CustomType, DataType, FieldDef};
use crate::value::{Record, Value};

/// A seeded random generator.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn word(rng: &mut impl Rng, min: usize, max: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let n = rng.random_range(min..=max);
    (0..n)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn hex(rng: &mut impl Rng, n: usize) -> String {
    (0..n).map(|_| format!("{:x}", rng.random_range(0..16u8))).collect()
}

/// A sample value of a custom type, in its valid text form.
pub fn custom_text(kind: CustomType, rng: &mut impl Rng) -> String {
    let (org, course, run) = (word(rng, 3, 8), word(rng, 3, 8), word(rng, 3, 8));
    match kind {
        CustomType::CourseKey => format!("course-v1:{org}+{course}+{run}"),
        CustomType::CcxLocator => format!("ccx-v1:{org}+{course}+{run}+ccx@{}", rng.random_range(1..1000)),
        CustomType::UsageKey => format!("block-v1:{org}+{course}+{run}+type@problem+block@{}", hex(rng, 32)),
        CustomType::LibraryLocatorV2 => format!("lib:{org}:{course}"),
        CustomType::LibraryUsageLocatorV2 => format!("lb:{org}:{course}:problem:{run}"),
        CustomType::LibraryCollectionLocator => format!("lib-collection:{org}:{course}:{run}"),
        CustomType::LibraryContainerLocator => format!("lct:{org}:{course}:unit:{run}"),
        CustomType::DateTime => format!(
            "20{:02}-{:02}-{:02}T{:02}:{:02}:{:02}+00:00",
            rng.random_range(20..30),
            rng.random_range(1..13),
            rng.random_range(1..29),
            rng.random_range(0..24),
            rng.random_range(0..60),
            rng.random_range(0..60)
        ),
        CustomType::Uuid => uuid::Builder::from_random_bytes(rng.random()).into_uuid().to_string(),
    }
}

/// Sample payload data for an event type (every optional field filled half
/// of the time).
pub fn event_data(event_type: &EventType, rng: &mut impl Rng) -> Record {
    record(event_type.fields(), rng)
}

fn record(fields: &[FieldDef], rng: &mut impl Rng) -> Record {
    let mut r = Record::with_capacity(fields.len());
    for f in fields {
        let v = if f.optional && rng.random_bool(0.5) {
            Value::Null
        } else {
            of_type(&f.ty, rng)
        };
        r.insert(f.name.as_str(), v);
    }
    r
}

fn of_type(ty: &DataType, rng: &mut impl Rng) -> Value {
    match ty {
        DataType::Boolean => Value::Boolean(rng.random()),
        DataType::Long => Value::Long(rng.random_range(-1_000_000..1_000_000)),
        DataType::Double => Value::Double(f64::from(rng.random_range(0..10_000)) / 100.0),
        DataType::Bytes | DataType::Unsupported(_) => Value::Bytes(word(rng, 0, 8).into_bytes()),
        DataType::String => Value::String(format!("sample-{}", word(rng, 6, 6))),
        DataType::Custom(kind) => Value::String(custom_text(*kind, rng)),
        DataType::Array(item) => Value::Array((0..rng.random_range(0..3)).map(|_| of_type(item, rng)).collect()),
        DataType::Map(values) => Value::Map(
            (0..rng.random_range(0..3))
                .map(|i| (format!("k{i}-{}", word(rng, 3, 3)), of_type(values, rng)))
                .collect(),
        ),
        DataType::Record(rt) => Value::Record(record(&rt.fields, rng)),
    }
}

/// A sample value of a plain Avro schema (no custom-type knowledge), as the
/// backward-compatibility tests generate data from a stored schema.
pub fn from_schema(schema: &Schema, rng: &mut impl Rng) -> Value {
    match schema {
        Schema::Null => Value::Null,
        Schema::Boolean => Value::Boolean(rng.random()),
        Schema::Int => Value::Long(i64::from(rng.random::<i32>())),
        Schema::Long => Value::Long(rng.random()),
        Schema::Float | Schema::Double => Value::Double(f64::from(rng.random_range(0..10_000)) / 100.0),
        Schema::Bytes => Value::Bytes(word(rng, 0, 8).into_bytes()),
        Schema::String => Value::String(word(rng, 0, 12)),
        Schema::Array(items) => Value::Array((0..rng.random_range(0..3)).map(|_| from_schema(items, rng)).collect()),
        Schema::Map(values) => Value::Map(
            (0..rng.random_range(0..3))
                .map(|i| (format!("k{i}"), from_schema(values, rng)))
                .collect(),
        ),
        Schema::Union(branches) => match branches.len() {
            0 => Value::Null,
            n => from_schema(&branches[rng.random_range(0..n)], rng),
        },
        Schema::Record(rs) => {
            let mut r = Record::with_capacity(rs.fields.len());
            for f in &rs.fields {
                r.push(f.name, from_schema(&f.schema, rng));
            }
            Value::Record(r)
        }
        Schema::Enum(e) => Value::String(e.symbols.first().cloned().unwrap_or_default()),
        Schema::Fixed(f) => Value::Bytes(vec![0; f.size]),
    }
}

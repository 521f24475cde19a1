//! Python objects to the core's values and back.
//!
//! Producing walks the attrs objects a signal was sent with, guided by the
//! event type's fields, straight into a [`Record`] (no Python serializer on
//! the way): attributes by name, custom types by their text form
//! (`isoformat()` for a datetime, `str()` for opaque keys and UUIDs), as
//! openedx-events' serializers write them. Consuming turns a decoded record
//! into the dictionary openedx-events' `AvroSignalDeserializer.from_dict`
//! rebuilds the attrs objects from.

use openedx_events::types::{CustomType, DataType, FieldDef};
use openedx_events::value::{Record, Value};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyList, PyString};

/// The payload record of a signal's keyword arguments.
pub fn record_from_kwargs(data: &Bound<'_, PyDict>, fields: &[FieldDef]) -> Result<Record, String> {
    let mut record = Record::with_capacity(fields.len());
    for f in fields {
        let item = data.get_item(&f.name).map_err(|e| format!("{}: {e}", f.name))?;
        let value = match item {
            Some(v) => field_value(&v, f, &f.name)?,
            None if f.optional => Value::Null,
            None => return Err(format!("the event data has no '{}'", f.name)),
        };
        record.insert(&f.name, value);
    }
    Ok(record)
}

fn field_value(obj: &Bound<'_, PyAny>, f: &FieldDef, at: &str) -> Result<Value, String> {
    if obj.is_none() {
        // A required field left None is reported by the core's validation.
        return Ok(Value::Null);
    }
    value(obj, &f.ty, at)
}

fn value(obj: &Bound<'_, PyAny>, ty: &DataType, at: &str) -> Result<Value, String> {
    let bad = |e: PyErr| format!("{at}: {e}");
    Ok(match ty {
        DataType::Boolean => Value::Boolean(obj.extract::<bool>().map_err(bad)?),
        DataType::Long => Value::Long(obj.extract::<i64>().map_err(bad)?),
        DataType::Double => Value::Double(obj.extract::<f64>().map_err(bad)?),
        DataType::Bytes => Value::Bytes(obj.extract::<Vec<u8>>().map_err(bad)?),
        DataType::String => Value::String(obj.extract::<String>().map_err(bad)?),
        DataType::Custom(CustomType::DateTime) if obj.hasattr("isoformat").map_err(bad)? => {
            Value::String(obj.call_method0("isoformat").and_then(|s| s.extract()).map_err(bad)?)
        }
        DataType::Custom(_) => Value::String(obj.str().and_then(|s| s.extract()).map_err(bad)?),
        DataType::Array(item) => {
            let mut items = Vec::new();
            for (i, x) in obj.try_iter().map_err(bad)?.enumerate() {
                let x = x.map_err(bad)?;
                items.push(value(&x, item, &format!("{at}[{i}]"))?);
            }
            Value::Array(items)
        }
        DataType::Map(item) => {
            let dict = obj.downcast::<PyDict>().map_err(|_| format!("{at}: expected a dict"))?;
            let mut entries = Vec::with_capacity(dict.len());
            for (k, v) in dict.iter() {
                let k: String = k.extract().map_err(bad)?;
                let v = value(&v, item, &format!("{at}[{k:?}]"))?;
                entries.push((k, v));
            }
            Value::Map(entries)
        }
        DataType::Record(rt) => {
            let mut record = Record::with_capacity(rt.fields.len());
            for f in &rt.fields {
                let inner = format!("{at}.{}", f.name);
                let attr = obj.getattr(f.name.as_str()).map_err(|e| format!("{inner}: {e}"))?;
                record.insert(&f.name, field_value(&attr, f, &inner)?);
            }
            Value::Record(record)
        }
        DataType::Unsupported(what) => return Err(format!("{at}: {what} cannot go on the event bus")),
    })
}

/// A decoded value as the plain Python value fastavro would give.
pub fn to_python<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Boolean(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Long(n) => n.into_pyobject(py)?.into_any(),
        Value::Double(f) => PyFloat::new(py, *f).into_any(),
        Value::Bytes(b) => PyBytes::new(py, b).into_any(),
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for i in items {
                list.append(to_python(py, i)?)?;
            }
            list.into_any()
        }
        Value::Map(entries) => {
            let dict = PyDict::new(py);
            for (k, v) in entries {
                dict.set_item(k, to_python(py, v)?)?;
            }
            dict.into_any()
        }
        Value::Record(r) => record_to_python(py, r)?.into_any(),
    })
}

/// A decoded record as a dictionary.
pub fn record_to_python<'py>(py: Python<'py>, r: &Record) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (k, v) in r.iter() {
        dict.set_item(k, to_python(py, v)?)?;
    }
    Ok(dict)
}

//! Parsed Avro schemas.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value as Json;

/// An Avro schema, with named types resolved to shared definitions.
#[derive(Debug, Clone, PartialEq)]
pub enum Schema {
    /// `"null"`
    Null,
    /// `"boolean"`
    Boolean,
    /// `"int"` (32-bit)
    Int,
    /// `"long"` (64-bit)
    Long,
    /// `"float"` (32-bit)
    Float,
    /// `"double"` (64-bit)
    Double,
    /// `"bytes"`
    Bytes,
    /// `"string"`
    String,
    /// `{"type": "array", "items": ..}`
    Array(Box<Schema>),
    /// `{"type": "map", "values": ..}`
    Map(Box<Schema>),
    /// `[..]`
    Union(Vec<Schema>),
    /// `{"type": "record", ..}`
    Record(Arc<RecordSchema>),
    /// `{"type": "enum", ..}`
    Enum(Arc<EnumSchema>),
    /// `{"type": "fixed", ..}`
    Fixed(Arc<FixedSchema>),
}

/// A record definition.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordSchema {
    /// Short name, e.g. `UserData`.
    pub name: String,
    /// Full name, e.g. `org.openedx.learning.course.enrollment.created.v1.UserData`.
    pub fullname: String,
    /// Fields in order.
    pub fields: Vec<RecordField>,
}

impl RecordSchema {
    /// Index of the field with this name.
    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }
}

/// One record field.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordField {
    /// Field name (interned: shared with decoded records).
    pub name: &'static str,
    /// Field schema.
    pub schema: Schema,
    /// The JSON default, if declared (`"default": null` is `Some(Null)`).
    pub default: Option<Json>,
}

/// An enum definition.
#[derive(Debug, Clone, PartialEq)]
pub struct EnumSchema {
    /// Full name.
    pub fullname: String,
    /// Symbols in order.
    pub symbols: Vec<String>,
    /// Default symbol for resolution.
    pub default: Option<String>,
}

/// A fixed definition.
#[derive(Debug, Clone, PartialEq)]
pub struct FixedSchema {
    /// Full name.
    pub fullname: String,
    /// Size in bytes.
    pub size: usize,
}

/// A schema that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// Not JSON.
    #[error("schema is not valid JSON: {0}")]
    Json(String),
    /// JSON, but not an Avro schema.
    #[error("invalid Avro schema at {at}: {message}")]
    Invalid {
        /// Where (a name or a field).
        at: String,
        /// What is wrong.
        message: String,
    },
    /// A name that was referenced before (or while) being defined.
    #[error("unknown or recursive type reference '{0}' (recursive schemas are not supported)")]
    UnknownReference(String),
    /// Defined twice.
    #[error("type '{0}' is defined twice")]
    Redefined(String),
}

fn invalid(at: &str, message: impl Into<String>) -> SchemaError {
    SchemaError::Invalid {
        at: at.to_string(),
        message: message.into(),
    }
}

impl Schema {
    /// Parse schema text (`.avsc` content or a registry schema string).
    pub fn parse_str(text: &str) -> Result<Schema, SchemaError> {
        let json: Json = serde_json::from_str(text).map_err(|e| SchemaError::Json(e.to_string()))?;
        Schema::parse(&json)
    }

    /// Parse a schema from JSON.
    ///
    /// Names are not checked against the Avro identifier grammar: like
    /// fastavro, a namespace such as `org.openedx.enterprise.subsidy.redemption-reversed.v1`
    /// is accepted.
    pub fn parse(json: &Json) -> Result<Schema, SchemaError> {
        let mut parser = Parser { named: HashMap::new() };
        parser.parse(json, "")
    }

    /// Whether this is a union that contains `null`.
    pub fn is_nullable(&self) -> bool {
        matches!(self, Schema::Union(branches) if branches.contains(&Schema::Null))
    }

    /// The Avro type name (`"string"`, `"record"`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            Schema::Null => "null",
            Schema::Boolean => "boolean",
            Schema::Int => "int",
            Schema::Long => "long",
            Schema::Float => "float",
            Schema::Double => "double",
            Schema::Bytes => "bytes",
            Schema::String => "string",
            Schema::Array(_) => "array",
            Schema::Map(_) => "map",
            Schema::Union(_) => "union",
            Schema::Record(_) => "record",
            Schema::Enum(_) => "enum",
            Schema::Fixed(_) => "fixed",
        }
    }

    /// The fewest bytes one value of this schema can take (0 for `null` and
    /// empty records), used to bound untrusted container counts.
    pub(crate) fn min_encoded_len(&self) -> usize {
        match self {
            Schema::Null => 0,
            Schema::Record(r) => r.fields.iter().map(|f| f.schema.min_encoded_len()).sum(),
            Schema::Fixed(f) => f.size,
            Schema::Boolean | Schema::Int | Schema::Long | Schema::Bytes | Schema::String => 1,
            Schema::Float => 4,
            Schema::Double => 8,
            Schema::Array(_) | Schema::Map(_) | Schema::Union(_) | Schema::Enum(_) => 1,
        }
    }
}

struct Parser {
    /// fullname -> definition; `None` while the definition is being parsed.
    named: HashMap<String, Option<Schema>>,
}

fn fullname(name: &str, namespace: &str) -> String {
    if name.contains('.') || namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}.{name}")
    }
}

fn namespace_of(fullname: &str) -> &str {
    fullname.rsplit_once('.').map(|(ns, _)| ns).unwrap_or("")
}

impl Parser {
    fn parse(&mut self, json: &Json, namespace: &str) -> Result<Schema, SchemaError> {
        match json {
            Json::String(name) => self.parse_name(name, namespace),
            Json::Array(branches) => {
                let mut out = Vec::with_capacity(branches.len());
                for b in branches {
                    let s = self.parse(b, namespace)?;
                    if matches!(s, Schema::Union(_)) {
                        return Err(invalid("union", "a union cannot directly contain a union"));
                    }
                    out.push(s);
                }
                Ok(Schema::Union(out))
            }
            Json::Object(obj) => {
                let ty = obj.get("type").ok_or_else(|| invalid("object", "missing \"type\""))?;
                let ty = match ty {
                    Json::String(t) => t.as_str(),
                    // {"type": {"type": "string"}} or {"type": [..]}: a wrapped schema.
                    other => return self.parse(other, namespace),
                };
                match ty {
                    "record" | "error" => self.parse_record(obj, namespace),
                    "enum" => self.parse_enum(obj, namespace),
                    "fixed" => self.parse_fixed(obj, namespace),
                    "array" => {
                        let items = obj.get("items").ok_or_else(|| invalid("array", "missing \"items\""))?;
                        Ok(Schema::Array(Box::new(self.parse(items, namespace)?)))
                    }
                    "map" => {
                        let values = obj.get("values").ok_or_else(|| invalid("map", "missing \"values\""))?;
                        Ok(Schema::Map(Box::new(self.parse(values, namespace)?)))
                    }
                    other => self.parse_name(other, namespace),
                }
            }
            other => Err(invalid("schema", format!("unexpected JSON {other}"))),
        }
    }

    fn parse_name(&mut self, name: &str, namespace: &str) -> Result<Schema, SchemaError> {
        Ok(match name {
            "null" => Schema::Null,
            "boolean" => Schema::Boolean,
            "int" => Schema::Int,
            "long" => Schema::Long,
            "float" => Schema::Float,
            "double" => Schema::Double,
            "bytes" => Schema::Bytes,
            "string" => Schema::String,
            _ => {
                let full = fullname(name, namespace);
                let found = self
                    .named
                    .get(&full)
                    .or_else(|| self.named.get(name))
                    .cloned()
                    .flatten();
                return found.ok_or_else(|| SchemaError::UnknownReference(name.to_string()));
            }
        })
    }

    fn name_of(
        &self,
        obj: &serde_json::Map<String, Json>,
        namespace: &str,
        what: &str,
    ) -> Result<(String, String), SchemaError> {
        let name = obj
            .get("name")
            .and_then(Json::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| invalid(what, "missing or empty \"name\""))?;
        let ns = match obj.get("namespace") {
            Some(Json::String(ns)) => ns.as_str(),
            Some(Json::Null) | None => namespace,
            Some(other) => return Err(invalid(name, format!("namespace must be a string, got {other}"))),
        };
        let full = fullname(name, ns);
        let short = full.rsplit('.').next().unwrap_or(name).to_string();
        if self.named.contains_key(&full) {
            return Err(SchemaError::Redefined(full));
        }
        Ok((short, full))
    }

    fn parse_record(&mut self, obj: &serde_json::Map<String, Json>, namespace: &str) -> Result<Schema, SchemaError> {
        let (name, full) = self.name_of(obj, namespace, "record")?;
        self.named.insert(full.clone(), None);
        let inner_ns = namespace_of(&full).to_string();
        let fields_json = obj
            .get("fields")
            .and_then(Json::as_array)
            .ok_or_else(|| invalid(&full, "record without a \"fields\" array"))?;
        let mut fields = Vec::with_capacity(fields_json.len());
        for f in fields_json {
            let fobj = f
                .as_object()
                .ok_or_else(|| invalid(&full, "a field is not an object"))?;
            let fname = fobj
                .get("name")
                .and_then(Json::as_str)
                .ok_or_else(|| invalid(&full, "a field has no name"))?;
            if fields.iter().any(|x: &RecordField| x.name == fname) {
                return Err(invalid(&full, format!("field '{fname}' appears twice")));
            }
            let ftype = fobj
                .get("type")
                .ok_or_else(|| invalid(&format!("{full}.{fname}"), "field has no type"))?;
            let schema = self.parse(ftype, &inner_ns)?;
            fields.push(RecordField {
                name: crate::value::intern(fname),
                schema,
                default: fobj.get("default").cloned(),
            });
        }
        let schema = Schema::Record(Arc::new(RecordSchema {
            name,
            fullname: full.clone(),
            fields,
        }));
        self.named.insert(full, Some(schema.clone()));
        Ok(schema)
    }

    fn parse_enum(&mut self, obj: &serde_json::Map<String, Json>, namespace: &str) -> Result<Schema, SchemaError> {
        let (_, full) = self.name_of(obj, namespace, "enum")?;
        let symbols = obj
            .get("symbols")
            .and_then(Json::as_array)
            .ok_or_else(|| invalid(&full, "enum without \"symbols\""))?
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| invalid(&full, "enum symbol is not a string"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let schema = Schema::Enum(Arc::new(EnumSchema {
            fullname: full.clone(),
            symbols,
            default: obj.get("default").and_then(Json::as_str).map(str::to_string),
        }));
        self.named.insert(full, Some(schema.clone()));
        Ok(schema)
    }

    fn parse_fixed(&mut self, obj: &serde_json::Map<String, Json>, namespace: &str) -> Result<Schema, SchemaError> {
        let (_, full) = self.name_of(obj, namespace, "fixed")?;
        let size = obj
            .get("size")
            .and_then(Json::as_u64)
            .ok_or_else(|| invalid(&full, "fixed without a \"size\""))?;
        let schema = Schema::Fixed(Arc::new(FixedSchema {
            fullname: full.clone(),
            size: usize::try_from(size).map_err(|_| invalid(&full, "fixed size too large"))?,
        }));
        self.named.insert(full, Some(schema.clone()));
        Ok(schema)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references_and_hyphenated_namespace() {
        let s = Schema::parse_str(
            r#"{"name": "CloudEvent", "type": "record", "namespace": "org.x.redemption-reversed.v1",
                "fields": [{"name": "a", "type": {"name": "A", "type": "record", "fields": [{"name": "s", "type": "string"}]}},
                           {"name": "b", "type": ["null", "A"], "default": null},
                           {"name": "c", "type": {"type": "array", "items": "A"}}]}"#,
        )
        .unwrap();
        let Schema::Record(r) = s else { panic!() };
        assert_eq!(r.fullname, "org.x.redemption-reversed.v1.CloudEvent");
        let Schema::Record(a) = &r.fields[0].schema else {
            panic!()
        };
        assert_eq!(a.fullname, "org.x.redemption-reversed.v1.A");
        assert!(r.fields[1].schema.is_nullable());
        assert_eq!(r.fields[1].default, Some(Json::Null));
    }

    #[test]
    fn rejects_unknown_and_recursive_references() {
        assert!(matches!(
            Schema::parse_str(
                r#"{"type": "record", "name": "L", "fields": [{"name": "next", "type": ["null", "L"]}]}"#
            ),
            Err(SchemaError::UnknownReference(_))
        ));
        assert!(Schema::parse_str(r#""Nope""#).is_err());
        assert!(Schema::parse_str("{").is_err());
    }
}

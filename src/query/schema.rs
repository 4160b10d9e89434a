//! Tool inputs as one source of truth: the JSON Schema a client sees is derived from the input
//! struct, and the arguments a client sends are checked against that same schema before they
//! become the struct.
//!
//! Schemas are made portable for older clients: every property has a single JSON `type`
//! (an optional input is one left out of `required`, never `["integer", "null"]`), no
//! `format` keyword (schemars emits non-standard ones such as `uint16` or `int64`), and
//! subschemas are inlined (no `$ref`).
//!
//! [`decode`] turns a JSON arguments object into an input struct. A wrong JSON type or an
//! unknown parameter becomes an [`InputError`] naming the parameter and what it allows, read
//! off the schema (its type, `enum`, `minimum`/`maximum`, and the first sentence of its
//! description); `null` means "not given"; whole floats (`80.0`) are integers.

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::InputError;

/// The portable input schema of `T`: an object schema with single-typed properties.
pub(crate) fn input_schema<T: JsonSchema>() -> Map<String, Value> {
    let mut settings = SchemaSettings::draft2020_12();
    settings.inline_subschemas = true;
    let schema = settings.into_generator().into_root_schema_for::<T>();
    let mut object = object_of(schema);
    portable(&mut object);
    object.remove("title");
    object.remove("description");
    object.remove("$schema");
    object.insert("type".into(), Value::String("object".into()));
    object
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    object
}

/// The output schema of `T` (how it serializes), without non-standard `format` keywords, and
/// every type a single string: a field that may be `null` is `anyOf` its type and `null`
/// rather than `"type": ["X", "null"]`, which several MCP clients read as one string (and
/// MCP Inspector flags as unportable). The answers themselves are unchanged.
pub(crate) fn output_schema<T: JsonSchema>() -> Map<String, Value> {
    let mut settings = SchemaSettings::draft2020_12().for_serialize();
    settings.inline_subschemas = true;
    let schema = settings.into_generator().into_root_schema_for::<T>();
    let mut object = object_of(schema);
    strip_formats(&mut object);
    single_types(&mut object);
    object.remove("title");
    object.remove("description");
    object.remove("$schema");
    object.insert("type".into(), Value::String("object".into()));
    object
}

fn object_of(schema: Schema) -> Map<String, Value> {
    match schema.to_value() {
        Value::Object(object) => object,
        _ => Map::new(),
    }
}

/// The `format` values of JSON Schema 2020-12 (§7.3); anything else is dropped.
const STANDARD_FORMATS: &[&str] = &[
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uuid",
    "uri-template",
    "json-pointer",
    "relative-json-pointer",
    "regex",
];

fn strip_formats(object: &mut Map<String, Value>) {
    if let Some(Value::String(format)) = object.get("format")
        && !STANDARD_FORMATS.contains(&format.as_str())
    {
        object.remove("format");
    }
    for value in object.values_mut() {
        for_each_object(value, &mut strip_formats);
    }
}

/// Keywords that say what a subschema is about, not what its values are: they stay beside
/// an `anyOf` made from a type array.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$comment",
];

/// `"type": ["X", "Y", ...]` → `"anyOf": [{"type": "X", <X's keywords>}, {"type": "Y"}, ...]`,
/// recursively; `null` stays a branch of its own. The value keywords (`minimum`, `items`,
/// `properties`, `enum` ...) go to every non-null branch, annotations stay where they were.
fn single_types(object: &mut Map<String, Value>) {
    for value in object.values_mut() {
        for_each_object(value, &mut single_types);
    }
    let Some(Value::Array(types)) = object.get("type") else {
        return;
    };
    let types = types.clone();
    object.remove("type");
    let keywords: Map<String, Value> = object
        .iter()
        .filter(|(k, _)| !ANNOTATIONS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    object.retain(|k, _| ANNOTATIONS.contains(&k.as_str()));
    let branches: Vec<Value> = types
        .into_iter()
        .map(|t| {
            let mut branch = Map::new();
            if t != "null" {
                branch.extend(keywords.clone());
                // A null in an `enum` belongs to the null branch.
                if let Some(Value::Array(values)) = branch.get_mut("enum") {
                    values.retain(|v| !v.is_null());
                }
            }
            branch.insert("type".into(), t);
            Value::Object(branch)
        })
        .collect();
    object.insert("anyOf".into(), Value::Array(branches));
}

fn for_each_object(value: &mut Value, f: &mut dyn FnMut(&mut Map<String, Value>)) {
    match value {
        Value::Object(o) => f(o),
        Value::Array(items) => {
            for item in items {
                for_each_object(item, f);
            }
        }
        _ => {}
    }
}

/// Rewrites a schema (recursively) so every subschema has a single type and no `format`.
fn portable(object: &mut Map<String, Value>) {
    object.remove("format");
    // `"type": ["integer", "null"]` → `"type": "integer"`.
    if let Some(Value::Array(types)) = object.get("type") {
        let kept: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        if kept.len() == 1 {
            object.insert("type".into(), kept[0].clone());
        } else {
            object.insert("type".into(), Value::Array(kept));
        }
    }
    // A null in an `enum` belongs to the Option, not to the values.
    if let Some(Value::Array(values)) = object.get_mut("enum") {
        values.retain(|v| !v.is_null());
    }
    // `anyOf: [X, {"type": "null"}]` → X.
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(alternatives)) = object.get(key) {
            let kept: Vec<Value> = alternatives
                .iter()
                .filter(|a| a.get("type").and_then(Value::as_str) != Some("null"))
                .cloned()
                .collect();
            if kept.len() == 1
                && let Value::Object(only) = &kept[0]
            {
                object.remove(key);
                for (k, v) in only {
                    object.entry(k.clone()).or_insert_with(|| v.clone());
                }
            } else {
                object.insert(key.into(), Value::Array(kept));
            }
        }
    }
    if object.get("default").is_some_and(Value::is_null) {
        object.remove("default");
    }
    for value in object.values_mut() {
        for_each_object(value, &mut portable);
    }
}

/// What a property allows, for an error message: read off its schema.
pub(crate) fn allowed(property: &Value) -> String {
    let kind = property.get("type").and_then(Value::as_str).unwrap_or("");
    let base = match kind {
        "integer" => {
            let min = property.get("minimum").and_then(Value::as_i64);
            let max = property.get("maximum").and_then(Value::as_i64);
            match (min, max) {
                (Some(min), Some(max)) => format!("must be an integer between {min} and {max}"),
                (Some(min), None) => format!("must be an integer >= {min}"),
                (None, Some(max)) => format!("must be an integer <= {max}"),
                (None, None) => "must be an integer".to_string(),
            }
        }
        "string" => match property.get("enum").and_then(Value::as_array) {
            Some(values) => {
                let names: Vec<&str> = values.iter().filter_map(Value::as_str).collect();
                format!("must be one of: {}", names.join(", "))
            }
            None => "must be a string".to_string(),
        },
        "array" => {
            let item = property
                .get("items")
                .and_then(|i| i.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("value");
            format!("must be an array of {item}s")
        }
        "boolean" => "must be true or false".to_string(),
        "object" => {
            let keys: Vec<&str> = property
                .get("properties")
                .and_then(Value::as_object)
                .map(|p| p.keys().map(String::as_str).collect())
                .unwrap_or_default();
            format!("must be an object with {}", keys.join(", "))
        }
        other => format!("must be of type {other}"),
    };
    match property
        .get("description")
        .and_then(Value::as_str)
        .map(first_sentence)
    {
        Some(hint) if !hint.is_empty() => format!("{base} ({hint})"),
        _ => base,
    }
}

/// The first sentence of a description, without its full stop, lower-cased at the start.
fn first_sentence(text: &str) -> String {
    let text = text.trim();
    let end = text
        .char_indices()
        .find(|&(i, c)| {
            c == '.'
                && text[i + 1..].starts_with(char::is_whitespace)
                && !text[..i].ends_with("e.g")
                && !text[..i].ends_with("i.e")
        })
        .map_or(text.len(), |(i, _)| i);
    let sentence = text[..end].trim_end_matches('.').replace('\n', " ");
    let mut chars = sentence.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Describes a JSON value for an error message, never longer than about 40 characters.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("\"{}\" (a string)", crate::query::shorten(s)),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
        Value::Bool(b) => format!("{b} (a boolean)"),
        Value::Null => "null".into(),
        Value::Number(n) => crate::query::shorten(&n.to_string()),
    }
}

/// Checks `args` against `schema` (made by [`input_schema`]) and decodes them into `T`.
pub(crate) fn decode<T: DeserializeOwned>(
    schema: &Map<String, Value>,
    args: &Map<String, Value>,
) -> Result<T, InputError> {
    let empty = Map::new();
    let properties = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut checked = Map::with_capacity(args.len());
    for (name, value) in args {
        let Some(property) = properties.get(name) else {
            let known: Vec<&str> = properties.keys().map(String::as_str).collect();
            return Err(InputError::new(
                "arguments",
                format!("unknown parameter '{}'", crate::query::shorten(name)),
                if known.is_empty() {
                    "must be empty: this tool takes no parameters".to_string()
                } else {
                    format!("may only contain: {}", known.join(", "))
                },
            ));
        };
        if value.is_null() {
            continue;
        }
        let wrong = || InputError::new(name, describe(value), allowed(property));
        let kind = property.get("type").and_then(Value::as_str).unwrap_or("");
        let value = match (kind, value) {
            ("integer", Value::Number(n)) => Value::from(integer(n).ok_or_else(wrong)?),
            ("integer", _) => return Err(wrong()),
            ("string", Value::String(_)) | ("boolean", Value::Bool(_)) => value.clone(),
            // An object is checked against its own properties; errors name `outer.inner`.
            ("object", Value::Object(inner)) => {
                let sub = property.as_object().cloned().unwrap_or_default();
                decode::<Value>(&sub, inner).map_err(|mut e| {
                    e.param = if e.param == "arguments" {
                        name.clone()
                    } else {
                        format!("{name}.{}", e.param)
                    };
                    e
                })?
            }
            ("array", Value::Array(items)) => {
                let item_kind = property
                    .get("items")
                    .and_then(|i| i.get("type"))
                    .and_then(Value::as_str);
                if let Some(bad) = items
                    .iter()
                    .find(|item| item_kind == Some("string") && !item.is_string())
                {
                    return Err(InputError::new(
                        name,
                        format!("an element {}", describe(bad)),
                        allowed(property),
                    ));
                }
                value.clone()
            }
            _ => return Err(wrong()),
        };
        checked.insert(name.clone(), value);
    }
    let required = schema.get("required").and_then(Value::as_array);
    for name in required.into_iter().flatten().filter_map(Value::as_str) {
        if args.get(name).is_none_or(Value::is_null) {
            let property = properties.get(name).unwrap_or(&Value::Null);
            return Err(InputError::new(
                name,
                "missing",
                format!("is required and {}", allowed(property)),
            ));
        }
    }
    serde_json::from_value(Value::Object(checked)).map_err(|e| {
        // The checks above make this unreachable for the structs we derive schemas from.
        InputError::new(
            "arguments",
            "not decodable",
            format!("must match the tool's input schema ({e})"),
        )
    })
}

/// A JSON number as an integer: whole floats count, values above `i64::MAX` saturate (they
/// are out of every range we accept, and validation says so).
fn integer(n: &serde_json::Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    if n.as_u64().is_some() {
        return Some(i64::MAX);
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    /// A made-up tool input exercising every shape the real ones use.
    #[derive(Debug, Deserialize, JsonSchema, PartialEq)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Demo {
        /// The port to look at. More words.
        #[schemars(range(min = 1, max = 65535))]
        port: Option<i64>,
        /// Protocol.
        #[schemars(extend("enum" = ["tcp", "udp"]))]
        proto: Option<String>,
        /// Arguments, e.g. -t.
        args: Option<Vec<String>>,
        /// Required count.
        count: u32,
    }

    #[test]
    fn schema_is_portable() {
        let schema = input_schema::<Demo>();
        let text = serde_json::to_string(&schema).unwrap();
        assert!(!text.contains("format"), "{text}");
        assert!(!text.contains("null"), "{text}");
        assert!(!text.contains("$ref"), "{text}");
        let props = schema["properties"].as_object().unwrap();
        for (name, p) in props {
            assert!(p["type"].is_string(), "{name}: {p}");
        }
        assert_eq!(props["proto"]["enum"], json!(["tcp", "udp"]));
        assert_eq!(props["port"]["minimum"], 1);
        assert_eq!(schema["required"], json!(["count"]));
        assert_eq!(schema["additionalProperties"], false);
    }

    #[test]
    fn decode_checks_names_and_types_from_the_schema() {
        let schema = input_schema::<Demo>();
        let args = |v: Value| v.as_object().cloned().unwrap();
        let ok: Demo = decode(
            &schema,
            &args(json!({"port": 80.0, "proto": null, "args": ["-t"], "count": 1})),
        )
        .unwrap();
        assert_eq!(ok.port, Some(80));
        assert_eq!(ok.proto, None);
        let e = decode::<Demo>(&schema, &args(json!({"port": "80", "count": 1}))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Invalid port: \"80\" (a string). Parameter 'port' must be an integer between 1 and 65535 (the port to look at)."
        );
        let e = decode::<Demo>(&schema, &args(json!({"port": 80.5, "count": 1}))).unwrap_err();
        assert!(e.to_string().starts_with("Invalid port: 80.5."), "{e}");
        let e = decode::<Demo>(&schema, &args(json!({"proto": 6, "count": 1}))).unwrap_err();
        assert!(e.to_string().contains("must be one of: tcp, udp"), "{e}");
        let e = decode::<Demo>(&schema, &args(json!({"args": ["-t", 5], "count": 1}))).unwrap_err();
        assert!(e.to_string().contains("an element 5"), "{e}");
        let e = decode::<Demo>(&schema, &args(json!({"prot": "tcp", "count": 1}))).unwrap_err();
        assert!(
            e.to_string()
                .contains("unknown parameter 'prot'. Parameter 'arguments' may only contain: port, proto, args, count"),
            "{e}"
        );
        let huge = "x".repeat(10_000);
        let e = decode::<Demo>(&schema, &args(json!({ "proto": 1, huge.clone(): 1 }))).unwrap_err();
        assert!(e.to_string().len() < 300, "{e}");
        let e = decode::<Demo>(&schema, &args(json!({ "port": huge, "count": 1 }))).unwrap_err();
        assert!(e.to_string().len() < 300, "{e}");
        let e = decode::<Demo>(&schema, &args(json!({ "count": null }))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Invalid count: missing. Parameter 'count' is required and must be an integer >= 0 (required count)."
        );
    }

    #[test]
    fn first_sentences() {
        assert_eq!(first_sentence("The port. More."), "the port");
        assert_eq!(
            first_sentence("Default 50; 0 means all."),
            "default 50; 0 means all"
        );
        assert_eq!(first_sentence("e.g. -t or -u"), "e.g. -t or -u");
        assert_eq!(first_sentence(""), "");
    }
}

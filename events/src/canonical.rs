//! Canonical JSON text: object keys sorted, no insignificant whitespace.
//!
//! The store keeps payloads and metadata as canonical text and the hash chain covers those
//! exact bytes, so a verifier only re-hashes what it reads; it never re-encodes.
use serde_json::Value;

/// Writes `value` as canonical JSON. Independent of serde_json's `preserve_order` feature.
pub fn to_canonical_string(value: &Value) -> String {
    let mut out = String::with_capacity(128);
    write_value(value, &mut out);
    out
}

/// Serializes any serde value canonically.
pub fn canonical<T: serde::Serialize>(value: &T) -> Result<String, serde_json::Error> {
    Ok(to_canonical_string(&serde_json::to_value(value)?))
}

fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(k, out);
                out.push(':');
                write_value(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(v, out);
            }
            out.push(']');
        }
        Value::String(s) => write_str(s, out),
        other => out.push_str(&other.to_string()),
    }
}

fn write_str(s: &str, out: &mut String) {
    // serde_json's string escaping is deterministic; reuse it rather than re-implement it.
    out.push_str(&Value::String(s.to_string()).to_string());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn given_keys_in_any_order_when_canonicalized_then_text_is_identical() {
        let a = json!({"b": 1, "a": {"y": [1, "x\"y"], "x": null}});
        let b: Value = serde_json::from_str(r#"{"a":{"x":null,"y":[1,"x\"y"]},"b":1}"#).unwrap();
        assert_eq!(to_canonical_string(&a), to_canonical_string(&b));
        assert_eq!(to_canonical_string(&a), r#"{"a":{"x":null,"y":[1,"x\"y"]},"b":1}"#);
    }

    #[test]
    fn canonical_text_parses_back_to_the_same_value() {
        let v = json!({"z": 1.5, "é": "ünïcode", "n": -3, "t": true});
        let text = to_canonical_string(&v);
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), v);
    }
}

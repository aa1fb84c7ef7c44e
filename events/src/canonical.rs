//! Canonical JSON text: object keys sorted, no insignificant whitespace.
//!
//! The store keeps payloads and metadata as canonical text and the hash chain covers those
//! exact bytes, so a verifier only re-hashes what it reads; it never re-encodes.
use serde_json::Value;

/// Writes `value` as canonical JSON. Independent of serde_json's `preserve_order` feature.
pub fn to_canonical_string(value: &Value) -> String {
    let mut out = Vec::with_capacity(256);
    write_value(value, &mut out);
    // Only serde_json's output and ASCII punctuation were written: valid UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Serializes any serde value canonically.
pub fn canonical<T: serde::Serialize>(value: &T) -> Result<String, serde_json::Error> {
    Ok(to_canonical_string(&serde_json::to_value(value)?))
}

fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_leaf(k, out);
                out.push(b':');
                write_value(&map[k], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(v, out);
            }
            out.push(b']');
        }
        leaf => write_leaf(leaf, out),
    }
}

/// A string, number, boolean or null as serde_json writes it (its escaping and number format
/// are deterministic), straight into the buffer: no copy of the value, no formatter. Writing
/// into a `Vec` cannot fail, nor can these values (a `Value` number is always finite).
fn write_leaf<T: serde::Serialize + ?Sized>(leaf: &T, out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(&mut *out, leaf);
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

    #[test]
    fn given_every_kind_of_leaf_when_canonicalized_then_each_is_written_as_serde_json_writes_it() {
        let leaves = json!([
            "",
            "tab\tquote\"back\\slash\u{1}",
            "ünïcode 🙂",
            "</script>",
            0,
            -0,
            1.5,
            -2.25e-10,
            1e300,
            -0.0,
            i64::MAX,
            f64::MIN_POSITIVE,
            "\u{7f}\u{2028}",
            u64::MAX,
            i64::MIN,
            true,
            false,
            null
        ]);
        let Value::Array(items) = &leaves else { unreachable!() };
        for leaf in items {
            assert_eq!(to_canonical_string(leaf), leaf.to_string(), "{leaf:?}");
        }
        assert_eq!(to_canonical_string(&leaves), leaves.to_string());
        assert_eq!(to_canonical_string(&json!({"k\"ey": {}, "a": []})), r#"{"a":[],"k\"ey":{}}"#);
    }
}

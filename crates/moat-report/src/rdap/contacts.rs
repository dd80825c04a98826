//! Reading abuse contacts out of an RDAP answer (RFC 9083), free of I/O.
//!
//! Registries nest them: ARIN puts the abuse contact inside the organisation entity, RIPE at
//! the top level, registries inside the registrar entity. So every `entities` array is walked,
//! depth first, and each entity whose `roles` include `abuse` gives the `email` properties of
//! its jCard (`vcardArray`, RFC 7095). The walk is bounded: a hostile server cannot make it
//! recurse deeply or run long.

use serde_json::Value;

use crate::sanitize;

const MAX_DEPTH: usize = 8;
const MAX_ENTITIES: usize = 500;
const MAX_CONTACTS: usize = 5;

/// The abuse e-mail addresses in an RDAP object, first found first, without duplicates
/// (compared case-insensitively), at most five.
pub fn abuse_emails(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen = 0usize;
    walk(v, 0, &mut seen, &mut out);
    out
}

fn walk(v: &Value, depth: usize, seen: &mut usize, out: &mut Vec<String>) {
    if depth > MAX_DEPTH || out.len() >= MAX_CONTACTS {
        return;
    }
    let Some(entities) = v.get("entities").and_then(Value::as_array) else {
        return;
    };
    for e in entities {
        *seen += 1;
        if *seen > MAX_ENTITIES {
            return;
        }
        if has_role(e, "abuse") {
            for addr in vcard_emails(e) {
                if out.len() < MAX_CONTACTS && !out.iter().any(|o| o.eq_ignore_ascii_case(&addr)) {
                    out.push(addr);
                }
            }
        }
        walk(e, depth + 1, seen, out);
    }
}

fn has_role(entity: &Value, role: &str) -> bool {
    entity
        .get("roles")
        .and_then(Value::as_array)
        .is_some_and(|roles| {
            roles
                .iter()
                .filter_map(Value::as_str)
                .any(|r| r.eq_ignore_ascii_case(role))
        })
}

/// The `email` values of an entity's jCard: `["vcard", [[name, params, type, value…], …]]`.
fn vcard_emails(entity: &Value) -> Vec<String> {
    let Some(props) = entity
        .get("vcardArray")
        .and_then(|v| v.get(1))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    props
        .iter()
        .filter_map(Value::as_array)
        .filter(|p| {
            p.first()
                .and_then(Value::as_str)
                .is_some_and(|n| n.eq_ignore_ascii_case("email"))
        })
        .flat_map(|p| p.iter().skip(3))
        .flat_map(|v| match v {
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect::<Vec<_>>(),
            Value::String(s) => vec![s.as_str()],
            _ => Vec::new(),
        })
        .filter_map(|s| sanitize::email(s.trim_start_matches("mailto:")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vcard(email: &str) -> Value {
        json!(["vcard", [["version", {}, "text", "4.0"], ["fn", {}, "text", "Abuse"],
                         ["email", {"type": "work"}, "text", email]]])
    }

    #[test]
    fn finds_nested_abuse_contacts_like_arin() {
        let v = json!({
            "objectClassName": "ip network",
            "entities": [{
                "roles": ["registrant"],
                "vcardArray": vcard("noc@org.example"),
                "entities": [
                    {"roles": ["technical"], "vcardArray": vcard("tech@org.example")},
                    {"roles": ["abuse"], "vcardArray": vcard("Abuse@Org.Example")}
                ]
            }]
        });
        assert_eq!(abuse_emails(&v), vec!["Abuse@org.example"]);
    }

    #[test]
    fn finds_top_level_abuse_contacts_like_ripe_and_dedupes() {
        let v = json!({"entities": [
            {"roles": ["abuse", "technical"], "vcardArray": vcard("abuse@isp.example")},
            {"roles": ["ABUSE"], "vcardArray": vcard("ABUSE@isp.example")},
            {"roles": ["abuse"], "vcardArray": vcard("mailto:second@isp.example")}
        ]});
        assert_eq!(
            abuse_emails(&v),
            vec!["abuse@isp.example", "second@isp.example"]
        );
    }

    #[test]
    fn weird_answers_give_nothing_and_do_not_panic() {
        for v in [
            json!(null),
            json!([]),
            json!({"entities": "x"}),
            json!({"entities": [1, "a", null, {"roles": "abuse"}]}),
            json!({"entities": [{"roles": ["abuse"], "vcardArray": "x"}]}),
            json!({"entities": [{"roles": ["abuse"], "vcardArray": ["vcard", [["email"]]]}]}),
            json!({"entities": [{"roles": ["abuse"], "vcardArray": ["vcard", [["email", {}, "text", "a\r\nb@x.example"]]]}]}),
        ] {
            assert!(abuse_emails(&v).is_empty(), "{v}");
        }
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let mut v = json!({"roles": ["abuse"], "vcardArray": vcard("deep@x.example")});
        for _ in 0..50 {
            v = json!({"entities": [v]});
        }
        assert!(abuse_emails(&v).is_empty());
        let mut shallow = json!({"roles": ["abuse"], "vcardArray": vcard("near@x.example")});
        for _ in 0..3 {
            shallow = json!({"entities": [shallow]});
        }
        assert_eq!(abuse_emails(&shallow), vec!["near@x.example"]);
    }
}

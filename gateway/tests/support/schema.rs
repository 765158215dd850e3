//! Every REST answer the tests receive is checked against `/api/openapi.json`: its status is
//! one the operation documents (or an error), and its JSON body has exactly the shape of the
//! schema: required keys present, each value of its type, and no key the schema does not name.
//! That makes the whole suite a conformance test of the document's response schemas.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use serde_json::Value;

/// The document, as the node serves it.
static DOC: LazyLock<Value> = LazyLock::new(|| {
    serde_json::to_value(chatsdk_gateway::openapi::document()).expect("the document is JSON")
});

/// The operation of `method` on `path` (a concrete path, query allowed): the documented path
/// whose literal segments match most.
fn operation<'d>(doc: &'d Value, method: &str, path: &str) -> Option<(&'d str, &'d Value)> {
    let path = path.split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path.split('/').collect();
    let mut best: Option<(usize, &str, &Value)> = None;
    for (template, item) in doc["paths"].as_object()? {
        let Some(op) = item.get(method.to_ascii_lowercase()) else {
            continue;
        };
        let parts: Vec<&str> = template.split('/').collect();
        if parts.len() != segments.len() {
            continue;
        }
        let mut literal = 0;
        let fits = parts.iter().zip(&segments).all(|(t, s)| {
            if t.starts_with('{') {
                !s.is_empty()
            } else {
                literal += usize::from(t == s);
                t == s
            }
        });
        if fits && best.is_none_or(|(l, _, _)| literal > l) {
            best = Some((literal, template.as_str(), op));
        }
    }
    best.map(|(_, t, op)| (t, op))
}

/// Checks an answer; `Err` says what does not match the document.
pub(crate) fn check(
    method: &str,
    path: &str,
    status: u16,
    content_type: Option<&str>,
    body: &Value,
) -> Result<(), String> {
    let doc = &*DOC;
    let Some((template, op)) = operation(doc, method, path) else {
        return Ok(()); // not a documented route: the router's fallbacks answer
    };
    let responses = &op["responses"];
    let declared = responses.get(status.to_string());
    let response = match declared {
        Some(r) => r,
        None if status >= 400 => &responses["default"],
        None if status == 304 => return Ok(()),
        None => {
            return Err(format!(
                "{method} {template} answered {status}, which the document does not list"
            ))
        }
    };
    let json = content_type.is_some_and(|c| c.starts_with("application/json"));
    let schema = &response["content"]["application/json"]["schema"];
    if schema.is_null() {
        if json && !body.is_null() && (200..300).contains(&status) {
            return Err(format!(
                "{method} {template} answered {status} with a JSON body the document does not describe"
            ));
        }
        return Ok(());
    }
    if !json {
        return Ok(());
    }
    let mut errors = Vec::new();
    validate(doc, schema, body, "$", true, &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{method} {template} answered {status} with a body its schema does not allow:\n  {}\nbody: {body}",
            errors.join("\n  ")
        ))
    }
}

fn resolve<'d>(doc: &'d Value, schema: &'d Value) -> &'d Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.trim_start_matches("#/components/schemas/");
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

/// The keys an object schema names, through `$ref` and `allOf`; `None` when it allows any.
fn known_keys(doc: &Value, schema: &Value) -> Option<BTreeSet<String>> {
    let schema = resolve(doc, schema);
    let mut keys = BTreeSet::new();
    let mut named = false;
    if let Some(props) = schema["properties"].as_object() {
        keys.extend(props.keys().cloned());
        named = true;
    }
    for part in schema["allOf"].as_array().into_iter().flatten() {
        keys.extend(known_keys(doc, part)?);
        named = true;
    }
    if !schema["additionalProperties"].is_null() && schema["additionalProperties"] != false {
        return None;
    }
    named.then_some(keys)
}

fn type_fits(kind: &str, value: &Value) -> bool {
    match kind {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => true,
    }
}

/// Appends to `errors` where `value` (at `at`) breaks `schema`; `strict`: an object may hold
/// only the keys the schema names.
fn validate(
    doc: &Value,
    schema: &Value,
    value: &Value,
    at: &str,
    strict: bool,
    errors: &mut Vec<String>,
) {
    let schema = resolve(doc, schema);
    for (keyword, exactly_one) in [("anyOf", false), ("oneOf", true)] {
        let Some(choices) = schema[keyword].as_array() else {
            continue;
        };
        let mut fits = 0;
        let mut why = Vec::new();
        for choice in choices {
            let mut errs = Vec::new();
            validate(doc, choice, value, at, strict, &mut errs);
            if errs.is_empty() {
                fits += 1;
            } else {
                why.extend(errs);
            }
        }
        if fits == 0 || (exactly_one && fits > 1) {
            errors.push(format!(
                "{at}: fits {fits} of the {keyword} choices ({})",
                why.join("; ")
            ));
        }
    }
    for part in schema["allOf"].as_array().into_iter().flatten() {
        validate(doc, part, value, at, false, errors);
    }
    match &schema["type"] {
        Value::String(kind) if !type_fits(kind, value) => {
            errors.push(format!("{at}: {value} is not a {kind}"));
            return;
        }
        Value::Array(kinds)
            if !kinds
                .iter()
                .any(|k| type_fits(k.as_str().unwrap_or_default(), value)) =>
        {
            errors.push(format!("{at}: {value} is none of {kinds:?}"));
            return;
        }
        _ => {}
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            errors.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    if let (Some(min), Some(n)) = (schema["minimum"].as_f64(), value.as_f64()) {
        if n < min {
            errors.push(format!("{at}: {n} is below {min}"));
        }
    }
    match value {
        Value::Array(items) => {
            if let Some(max) = schema["maxItems"].as_u64() {
                if items.len() as u64 > max {
                    errors.push(format!("{at}: more than {max} items"));
                }
            }
            if schema["items"].is_object() {
                for (i, item) in items.iter().enumerate() {
                    validate(
                        doc,
                        &schema["items"],
                        item,
                        &format!("{at}[{i}]"),
                        true,
                        errors,
                    );
                }
            }
        }
        Value::Object(map) => {
            for r in schema["required"].as_array().into_iter().flatten() {
                let key = r.as_str().unwrap_or_default();
                if !map.contains_key(key) {
                    errors.push(format!("{at}: no `{key}`"));
                }
            }
            let props = schema["properties"].as_object();
            for (key, v) in map {
                let here = format!("{at}.{key}");
                if let Some(p) = props.and_then(|p| p.get(key)) {
                    validate(doc, p, v, &here, true, errors);
                } else if schema["additionalProperties"].is_object() {
                    validate(doc, &schema["additionalProperties"], v, &here, true, errors);
                }
            }
            if strict {
                if let Some(known) = known_keys(doc, schema) {
                    for key in map.keys().filter(|k| !known.contains(*k)) {
                        errors.push(format!("{at}: `{key}` is not in the schema"));
                    }
                }
            }
        }
        _ => {}
    }
}

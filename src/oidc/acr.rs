//! Authentication context classes (`acr_values`, OIDC Core §3.1.2.1, and the `acr` claim), as
//! Keycloak treats them: a class is a level of authentication, named by its number ("0": no
//! authentication in this request, "1": a password) or by a name the realm or client maps to
//! a level (Keycloak's `acr.loa.map` attribute, a JSON object such as `{"silver": 1}`; the
//! client's map wins over the realm's).
//!
//! Requested classes are voluntary (the request never fails for them). When one is satisfied
//! by the level the session's authentication reached, the token reports that level, as
//! Keycloak does: by a requested name the map gives exactly that level, else by its number.
//! When none is (or none was asked), Keycloak's default stands: "1" after a password in this
//! request, "0" for single sign-on. Only a password exists here, so a class above level 1 is
//! never satisfied.
use annals_projections::clients::ClientView;
use annals_projections::realms::RealmView;
use serde_json::Value;
use std::collections::BTreeMap;

/// Keycloak's attribute holding the class-to-level map.
pub const LOA_MAP: &str = "acr.loa.map";

/// The names a map gives levels, from a realm's or client's attribute text.
pub fn loa_map(text: Option<&str>) -> BTreeMap<String, u32> {
    let Some(Ok(Value::Object(m))) = text.map(serde_json::from_str::<Value>) else { return BTreeMap::new() };
    m.into_iter()
        .filter_map(|(k, v)| {
            let level = v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))?;
            Some((k, u32::try_from(level).ok()?))
        })
        .collect()
}

/// The map in force for a client: its own, else its realm's (`attributes` of the realm
/// representation, kept in the realm's `extra`).
pub fn map_for(realm: &RealmView, client: &ClientView) -> BTreeMap<String, u32> {
    let own = client.settings.attributes.get(LOA_MAP).map(String::as_str);
    loa_map(own.filter(|t| !loa_map(Some(t)).is_empty()).or_else(|| realm_attribute(realm)))
}

/// The realm's own map attribute text.
pub fn realm_attribute(realm: &RealmView) -> Option<&str> {
    realm.extra.get("attributes").and_then(|a| a.get(LOA_MAP)).and_then(Value::as_str)
}

/// The level a class names: a name in the map, or a number written plainly (no sign, no
/// leading zero); `None` for an unknown class.
fn level(class: &str, map: &BTreeMap<String, u32>) -> Option<u32> {
    let plain =
        !class.is_empty() && class.bytes().all(|b| b.is_ascii_digit()) && (class == "0" || !class.starts_with('0'));
    map.get(class).copied().or_else(|| plain.then(|| class.parse().ok()).flatten())
}

/// The `acr` a token reports. `default` is Keycloak's value for this request ("1" or "0"),
/// `achieved` the level the session's authentication reached (a number, never looked up in
/// the map: a map naming a class "1" must not raise it), `requested` the request's
/// `acr_values` (space-separated).
pub fn reported(default: &str, achieved: &str, requested: Option<&str>, map: &BTreeMap<String, u32>) -> String {
    let Ok(reached) = achieved.parse::<u32>() else { return default.to_string() };
    let classes: Vec<(&str, u32)> =
        requested.into_iter().flat_map(str::split_whitespace).filter_map(|c| Some((c, level(c, map)?))).collect();
    if !classes.iter().any(|(_, l)| *l <= reached) {
        return default.to_string();
    }
    let named = classes.iter().find(|(c, l)| *l == reached && map.contains_key(*c));
    named.map_or_else(|| reached.to_string(), |(c, _)| c.to_string())
}

/// The classes discovery advertises: the levels Annals reaches and the realm's names for them.
pub fn supported(map: &BTreeMap<String, u32>) -> Vec<String> {
    let mut out = vec!["0".to_string(), "1".to_string()];
    out.extend(map.iter().filter(|(_, l)| **l <= 1).map(|(k, _)| k.clone()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> BTreeMap<String, u32> {
        loa_map(Some(r#"{"silver": 1, "gold": "2", "bronze": 0, "bad": "x", "neg": -1}"#))
    }

    #[test]
    fn given_a_map_attribute_when_parsed_then_levels_are_numbers_and_nonsense_is_dropped() {
        let m = map();
        assert_eq!(m.get("silver"), Some(&1));
        assert_eq!(m.get("gold"), Some(&2));
        assert!(!m.contains_key("bad") && !m.contains_key("neg"));
        assert!(loa_map(Some("not json")).is_empty());
        assert!(loa_map(Some("[1,2]")).is_empty());
        assert!(loa_map(None).is_empty());
    }

    #[test]
    fn given_no_request_when_reporting_then_keycloaks_default_stands() {
        assert_eq!(reported("0", "1", None, &map()), "0");
        assert_eq!(reported("1", "1", Some(""), &map()), "1");
        assert_eq!(reported("0", "1", Some("urn:unknown +1 01"), &map()), "0", "unknown classes are ignored");
    }

    #[test]
    fn given_single_sign_on_when_the_session_reached_a_requested_class_then_the_level_is_reported() {
        assert_eq!(reported("0", "1", Some("1"), &map()), "1", "the password earlier in the session counts");
        assert_eq!(reported("0", "1", Some("silver"), &map()), "silver", "by a requested name of that level");
        assert_eq!(reported("1", "1", Some("bronze silver"), &map()), "silver", "the name of the level reached");
        assert_eq!(reported("0", "1", Some("bronze"), &map()), "1", "reached beyond: said as the level's number");
    }

    #[test]
    fn given_a_class_above_what_a_password_reaches_when_reporting_then_the_default_stands() {
        assert_eq!(reported("1", "1", Some("gold"), &map()), "1");
        assert_eq!(reported("0", "1", Some("2 urn:unknown"), &map()), "0");
        assert_eq!(reported("1", "1", Some("gold silver"), &map()), "silver", "a lesser alternative satisfied");
    }

    #[test]
    fn given_a_map_naming_a_number_when_reporting_then_the_achieved_level_is_not_raised() {
        let m = loa_map(Some(r#"{"1": 2, "strong": 2}"#));
        assert_eq!(reported("0", "1", Some("strong"), &m), "0", "a password never satisfies level 2");
        assert_eq!(reported("0", "1", Some("1"), &m), "0", "\"1\" names level 2 in this map");
    }

    #[test]
    fn given_a_realm_map_when_advertising_then_only_reachable_names_are_listed() {
        assert_eq!(supported(&map()), vec!["0", "1", "bronze", "silver"]);
    }
}

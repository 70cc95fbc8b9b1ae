//! Reading an `/admin/routing` answer (the proxy's routing table as JSON):
//! pure functions, for the fake-node and the real-cluster tests alike.
#![allow(dead_code)]

use std::collections::BTreeSet;

use serde_json::Value;

/// Backend `name` in an `/admin/routing` answer; panics when it has none.
pub fn backend<'a>(routing: &'a Value, name: &str) -> &'a Value {
    routing["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .find(|b| b["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in /admin/routing: {routing}"))
}

/// Every backend name in the table, in order, duplicates kept.
pub fn backend_names(routing: &Value) -> Vec<String> {
    routing["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect()
}

/// The backend names in the table, as a set.
pub fn name_set(routing: &Value) -> BTreeSet<String> {
    backend_names(routing).into_iter().collect()
}

/// The followers the table lists (it must list some).
pub fn follower_set(routing: &Value) -> BTreeSet<String> {
    routing["followers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect()
}

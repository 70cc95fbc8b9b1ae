//! `preset: NAME`: the probes, routes, not-leader answers and positions of
//! a known system, as a YAML document built into the binary
//! (`src/config/presets/NAME.yaml`, each commented with the documented
//! behaviour it relies on). The preset is the base and the user's file goes
//! on top of it ([`merge`]); `backends`, `listen` and `admin` never come
//! from a preset.

use serde_yaml::Value;

/// Every preset: its name and its document.
const PRESETS: &[(&str, &str)] = &[
    ("etcd", include_str!("presets/etcd.yaml")),
    ("etcd-v3", include_str!("presets/etcd-v3.yaml")),
    ("rqlite", include_str!("presets/rqlite.yaml")),
    ("consul", include_str!("presets/consul.yaml")),
    ("vault", include_str!("presets/vault.yaml")),
    ("patroni", include_str!("presets/patroni.yaml")),
    ("redis-webdis", include_str!("presets/redis-webdis.yaml")),
    ("postgres", include_str!("presets/postgres.yaml")),
    (
        "redis-sentinel",
        include_str!("presets/redis-sentinel.yaml"),
    ),
    // Needs the cargo feature `mysql` (else the config error says so).
    ("mariadb", include_str!("presets/mariadb.yaml")),
];

/// Keys a preset must not set: they name this deployment, not the system.
pub const NEVER_FROM_PRESET: &[&str] = &["backends", "listen", "admin"];

/// The names of every preset, in the order they are listed.
pub(crate) fn names() -> impl Iterator<Item = &'static str> {
    PRESETS.iter().map(|(n, _)| *n)
}

/// The YAML document of preset `name`.
pub(crate) fn document(name: &str) -> Option<&'static str> {
    PRESETS.iter().find(|(n, _)| *n == name).map(|(_, d)| *d)
}

/// Keys of one map of which at most one may be given: when the user's map
/// gives one of them, the preset's others are dropped (writing `json:` for
/// a position replaces the preset's `header:`, it does not add to it).
const ALTERNATIVES: &[(&str, &[&str])] = &[
    ("positions.probe", &["header", "json", "regex"]),
    ("positions.response", &["header", "json", "regex"]),
    (
        "health.expect.json",
        &["equals", "equals_pointer", "one_of"],
    ),
    (
        "leader.expect.json",
        &["equals", "equals_pointer", "one_of"],
    ),
    ("reads.session", &["header", "cookie", "client_ip"]),
];

/// The user's document `top` on the preset's `base`: maps merge key by key,
/// recursively; the user's scalars and sequences replace the preset's
/// (so `routes:` replaces every preset route); a key the user sets to null
/// (`~`) removes the preset's value, back to the built-in default; among
/// keys of which one map gives at most one (`header`, `json`, `regex` of a
/// position; `equals`, `equals_pointer`, `one_of` of an `expect.json`; `header`,
/// `cookie`, `client_ip` of `reads.session`), the user's choice drops the
/// preset's other ones.
pub fn merge(base: Value, top: Value) -> Value {
    merge_at("", base, top)
}

fn merge_at(path: &str, base: Value, top: Value) -> Value {
    match (base, top) {
        (Value::Mapping(mut b), Value::Mapping(t)) => {
            if let Some((_, group)) = ALTERNATIVES.iter().find(|(p, _)| *p == path) {
                if group.iter().any(|k| t.contains_key(*k)) {
                    for k in group.iter() {
                        b.remove(*k);
                    }
                }
            }
            for (k, tv) in t {
                let key = k.as_str().unwrap_or_default();
                let sub = if path.is_empty() {
                    key.to_string()
                } else {
                    format!("{path}.{key}")
                };
                if tv.is_null() {
                    b.remove(&k);
                    continue;
                }
                let merged = match b.remove(&k) {
                    Some(bv) => merge_at(&sub, bv, tv),
                    None => tv,
                };
                b.insert(k, merged);
            }
            Value::Mapping(b)
        }
        (_, top) => top,
    }
}

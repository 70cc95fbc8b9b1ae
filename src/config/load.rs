//! Loading: a file (or text) to a validated [`Config`], with a preset
//! merged under the user's keys and `LEADERPROXY_ZONE` on top.

use std::path::Path;

use serde::Deserialize;

use super::document::RawConfig;
use super::error::{split_key, yaml_error};
use super::validator::valid_zone;
use super::{presets, Config, ConfigError, Locator, PresetSource, Problem, Validator};

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError(vec![Problem {
            file: file.clone(),
            at: None,
            key: String::new(),
            message: format!("cannot read: {e}"),
        }])
    })?;
    let mut cfg = parse(&text, path)?;
    if let Some(z) = std::env::var("LEADERPROXY_ZONE")
        .ok()
        .filter(|z| !z.is_empty())
    {
        if !valid_zone(&z) {
            return Err(ConfigError(vec![Problem {
                file: "LEADERPROXY_ZONE".into(),
                at: None,
                key: String::new(),
                message: format!("invalid zone {z:?} (use letters, digits, '-', '_' and '.')"),
            }]));
        }
        cfg.local_zone = Some(z);
    }
    Ok(cfg)
}

/// Parses and validates config text; `path` is used in messages.
///
/// The user's text is deserialized on its own first, so that a bad value
/// is reported at its line and column. With `preset: NAME`, the preset's
/// document is the base and the user's text goes on top
/// ([`presets::merge`]); the merged document is what is validated, and a
/// problem with a key only the preset gave says so.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let user: RawConfig = serde_yaml::from_str(text).map_err(|e| yaml_error(&file, &e))?;
    let loc = Locator::new(text);
    let (raw, preset) = match user.preset.clone() {
        None => (user, None),
        Some(name) => {
            let Some(doc) = presets::document(&name) else {
                return Err(ConfigError(vec![Problem {
                    file,
                    at: loc.find("preset"),
                    key: "preset".into(),
                    message: format!(
                        "unknown preset {name:?}; the presets are {}",
                        presets::names().collect::<Vec<_>>().join(", ")
                    ),
                }]));
            };
            let raw = with_preset(&file, &name, doc, text)?;
            let at = loc.find("preset");
            (
                raw,
                Some(PresetSource {
                    loc: Locator::new(doc),
                    name,
                    at,
                }),
            )
        }
    };
    let mut v = Validator {
        file,
        loc,
        problems: Vec::new(),
        preset,
    };
    let cfg = v.config(raw, path);
    if v.problems.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigError(v.problems))
    }
}

/// The user's text on top of preset `name`'s document, deserialized.
fn with_preset(file: &str, name: &str, doc: &str, text: &str) -> Result<RawConfig, ConfigError> {
    let base: serde_yaml::Value =
        serde_yaml::from_str(doc).map_err(|e| yaml_error(&format!("preset {name}"), &e))?;
    let top: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| yaml_error(file, &e))?;
    RawConfig::deserialize(presets::merge(base, top)).map_err(|e| {
        let (key, message) = split_key(&e.to_string());
        ConfigError(vec![Problem {
            file: file.to_string(),
            at: None,
            key,
            message: format!("{message} (after merging preset {name})"),
        }])
    })
}

//! Where settings come from: the TOML file (with its unknown-key check) and the `CHATSDK_`
//! environment variables, applied through a `toml::Table` so serde checks every type in one
//! place.

use std::collections::BTreeMap;
use std::path::Path;

use toml::{Table, Value};

use super::{Config, ConfigError, ENV_PREFIX, RESERVED_ENV_VARS};

/// Parses a config file's text: TOML syntax, then unknown keys, then types.
pub(super) fn parse_file(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let file_error = |e: toml::de::Error| ConfigError::File {
        path: path.to_path_buf(),
        reason: e.to_string().trim_end().to_string(),
    };
    let found: Table = text.parse().map_err(file_error)?;
    let known = to_table(&Config::default())?;
    for (section, value) in &found {
        let unknown = |key: String| ConfigError::UnknownKey {
            path: path.to_path_buf(),
            key,
        };
        let known_keys = known.get(section).ok_or_else(|| unknown(section.clone()))?;
        // A section that is not a table is a type error, which serde reports next.
        if let (Value::Table(keys), Value::Table(known_keys)) = (value, known_keys) {
            if let Some(key) = keys.keys().find(|key| !known_keys.contains_key(*key)) {
                return Err(unknown(format!("{section}.{key}")));
            }
        }
    }
    // Deserializing the text again (not `found`) keeps line numbers in type errors.
    toml::from_str(text).map_err(file_error)
}

/// Applies the `CHATSDK_` variables among `env` in name order, checking each one's type as
/// it goes so that an error names the variable at fault.
pub(super) fn apply_env(
    config: Config,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut table = to_table(&config)?;
    let vars: BTreeMap<String, String> = env
        .into_iter()
        .filter(|(name, _)| {
            has_env_prefix(name)
                && !RESERVED_ENV_VARS.contains(&name.as_str())
                && names_config_key(&table, name)
        })
        .collect();
    if vars.is_empty() {
        return Ok(config);
    }
    let mut config = config;
    for (var, raw) in &vars {
        let slot = env_slot(&mut table, var)
            .ok_or_else(|| ConfigError::UnknownEnvVar { var: var.clone() })?;
        *slot = env_value(raw, slot);
        config = table
            .clone()
            .try_into()
            .map_err(|e| ConfigError::EnvValue {
                var: var.clone(),
                reason: e.message().to_string(),
            })?;
    }
    Ok(config)
}

/// The value in `table` that the variable `var` (`CHATSDK_<SECTION>__<KEY>`) names.
fn env_slot<'t>(table: &'t mut Table, var: &str) -> Option<&'t mut Value> {
    let (section, key) = var.get(ENV_PREFIX.len()..)?.split_once("__")?;
    match table.get_mut(&section.to_ascii_lowercase())? {
        Value::Table(keys) => keys.get_mut(&key.to_ascii_lowercase()),
        _ => None,
    }
}

/// Whether the prefixed variable `name` is meant as a config key: it has the `__` separator,
/// or it starts with a section's name (`CHATSDK_SERVER_HTTP`, a typo to report). Other
/// prefixed names (`CHATSDK_TOKEN`, `CHATSDK_URL`: tools' and scripts' own variables) are left
/// alone, so they do not stop a node from starting.
fn names_config_key(table: &Table, name: &str) -> bool {
    let Some(rest) = name.get(ENV_PREFIX.len()..) else {
        return false;
    };
    if rest.contains("__") {
        return true;
    }
    let rest = rest.to_ascii_lowercase();
    table.keys().any(|section| {
        rest == *section
            || rest
                .strip_prefix(section.as_str())
                .is_some_and(|tail| tail.starts_with('_'))
    })
}

/// Whether `name` starts with [`ENV_PREFIX`], in any case: `chatsdk_...` is a typo to report,
/// not a variable to ignore.
pub(super) fn has_env_prefix(name: &str) -> bool {
    name.get(..ENV_PREFIX.len())
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(ENV_PREFIX))
}

/// The TOML value of an environment variable for a key whose current value is `current`.
fn env_value(raw: &str, current: &Value) -> Value {
    if current.is_str() {
        Value::String(raw.to_string())
    } else if let Ok(int) = raw.parse::<i64>() {
        Value::Integer(int)
    } else if let Ok(boolean) = raw.parse::<bool>() {
        Value::Boolean(boolean)
    } else if let Ok(float) = raw.parse::<f64>() {
        Value::Float(float)
    } else {
        Value::String(raw.to_string())
    }
}

/// The config as a TOML table; every key is present, so it doubles as the list of known keys.
fn to_table(config: &Config) -> Result<Table, ConfigError> {
    Table::try_from(config).map_err(|e| ConfigError::Render {
        reason: e.to_string(),
    })
}

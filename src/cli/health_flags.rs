//! `--health-cmd`, `--health-interval`, `--health-timeout`, `--health-retries`,
//! `--health-start-period`, `--health-start-interval` and `--no-healthcheck` of `run`/`create`
//! as docker turns them into `Config.Healthcheck`.

use serde_json::{json, Value};

#[derive(Debug, Default, Clone)]
pub struct HealthFlags {
    pub cmd: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub retries: Option<i64>,
    pub start_period: Option<String>,
    pub start_interval: Option<String>,
    pub none: bool,
}

fn nanos(flag: &str, v: &Option<String>) -> Result<i64, String> {
    let Some(text) = v else { return Ok(0) };
    let d = crate::timefmt::parse_duration(text).ok_or_else(|| {
        format!("invalid argument \"{text}\" for \"--{flag}\" flag: time: invalid duration \"{text}\"")
    })?;
    if d.as_nanos() > 0 && d.as_millis() < 1 {
        return Err(format!("--{flag} cannot be less than 1ms"));
    }
    Ok(d.as_nanos() as i64)
}

/// The `Healthcheck` body, or `None` when no flag was given (the image's applies).
pub fn healthcheck(f: &HealthFlags) -> Result<Option<Value>, String> {
    let any = f.cmd.is_some()
        || f.interval.is_some()
        || f.timeout.is_some()
        || f.retries.is_some()
        || f.start_period.is_some()
        || f.start_interval.is_some();
    if f.none {
        if any {
            return Err("--no-healthcheck conflicts with --health-* options".into());
        }
        return Ok(Some(json!({ "Test": ["NONE"] })));
    }
    if !any {
        return Ok(None);
    }
    if f.retries.is_some_and(|r| r < 0) {
        return Err("--health-retries cannot be negative".into());
    }
    let test: Vec<String> = match &f.cmd {
        Some(c) => vec!["CMD-SHELL".into(), c.clone()],
        None => Vec::new(),
    };
    Ok(Some(json!({
        "Test": test,
        "Interval": nanos("health-interval", &f.interval)?,
        "Timeout": nanos("health-timeout", &f.timeout)?,
        "Retries": f.retries.unwrap_or(0),
        "StartPeriod": nanos("health-start-period", &f.start_period)?,
        "StartInterval": nanos("health-start-interval", &f.start_interval)?,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_become_docker_shapes() {
        let f = HealthFlags {
            cmd: Some("test -f /ok".into()),
            interval: Some("2s".into()),
            retries: Some(4),
            ..Default::default()
        };
        let v = healthcheck(&f).unwrap().unwrap();
        assert_eq!(v["Test"], json!(["CMD-SHELL", "test -f /ok"]));
        assert_eq!(v["Interval"], json!(2_000_000_000i64));
        assert_eq!(v["Retries"], json!(4));
        assert_eq!(healthcheck(&HealthFlags::default()).unwrap(), None);
        assert_eq!(
            healthcheck(&HealthFlags {
                none: true,
                ..Default::default()
            })
            .unwrap()
            .unwrap()["Test"],
            json!(["NONE"])
        );
        assert!(healthcheck(&HealthFlags {
            none: true,
            cmd: Some("x".into()),
            ..Default::default()
        })
        .is_err());
        assert!(healthcheck(&HealthFlags {
            interval: Some("soon".into()),
            ..Default::default()
        })
        .is_err());
    }
}

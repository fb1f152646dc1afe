//! Which OpenTelemetry signals are on, read from the standard `OTEL_*` variables only.
//!
//! A signal is on when an endpoint is configured for it (`OTEL_EXPORTER_OTLP_ENDPOINT` or the
//! signal's own `OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_ENDPOINT`) and `OTEL_{…}_EXPORTER` is
//! not `none`; `OTEL_SDK_DISABLED=true` turns everything off. Traces also need
//! `OTEL_TRACES_SAMPLER`: atomserve traces nothing by default (a span per static file is rarely
//! wanted), and the SDK reads the sampler and its argument itself. With no signal on, nothing of
//! OpenTelemetry starts: no thread, no allocation.
//!
//! The span and log exporters resolve their endpoints, headers, timeouts and compression
//! themselves; the metric exporter (see [`super::metrics`]) posts its own request, so the same
//! rules are reimplemented here for it.

use std::collections::HashMap;
use std::env;
use std::time::Duration;

/// Variables of one process environment, so that tests can pass their own.
pub trait Vars {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Vars for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        env::var(name).ok().filter(|v| !v.trim().is_empty())
    }
}

impl Vars for HashMap<&str, &str> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).map(|v| v.to_string()).filter(|v| !v.trim().is_empty())
    }
}

/// The three OTLP signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    fn upper(self) -> &'static str {
        match self {
            Signal::Traces => "TRACES",
            Signal::Metrics => "METRICS",
            Signal::Logs => "LOGS",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Signal::Traces => "/v1/traces",
            Signal::Metrics => "/v1/metrics",
            Signal::Logs => "/v1/logs",
        }
    }

    /// `OTEL_TRACES_EXPORTER` & co.: `none` turns the signal off; `otlp` (the default) keeps it.
    fn exporter_var(self) -> String {
        format!("OTEL_{}_EXPORTER", self.upper())
    }

    /// A per-signal variable if set, else the general one: `OTEL_EXPORTER_OTLP_METRICS_TIMEOUT`,
    /// then `OTEL_EXPORTER_OTLP_TIMEOUT`.
    fn var(self, vars: &dyn Vars, suffix: &str) -> Option<String> {
        vars.get(&format!("OTEL_EXPORTER_OTLP_{}_{suffix}", self.upper()))
            .or_else(|| vars.get(&format!("OTEL_EXPORTER_OTLP_{suffix}")))
    }
}

/// Which signals to start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Enabled {
    pub traces: bool,
    pub metrics: bool,
    pub logs: bool,
}

impl Enabled {
    pub fn any(self) -> bool {
        self.traces || self.metrics || self.logs
    }
}

/// Reads which signals are on.
pub fn enabled(vars: &dyn Vars) -> Enabled {
    if vars.get("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Enabled::default();
    }
    let on = |signal: Signal| {
        let endpoint = vars.get("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
            || vars.get(&format!("OTEL_EXPORTER_OTLP_{}_ENDPOINT", signal.upper())).is_some();
        let exporter = vars.get(&signal.exporter_var()).unwrap_or_else(|| "otlp".into());
        endpoint && !exporter.split(',').all(|e| e.trim().eq_ignore_ascii_case("none"))
    };
    Enabled {
        traces: on(Signal::Traces) && vars.get("OTEL_TRACES_SAMPLER").is_some(),
        metrics: on(Signal::Metrics),
        logs: on(Signal::Logs),
    }
}

/// How the metric exporter posts: the resolved URL, headers, timeout and compression.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpTarget {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub gzip: bool,
}

/// The default when no timeout variable is set (the OTLP specification's 10 s).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Resolves where `signal` goes, by the OTLP exporter specification's rules: the per-signal
/// endpoint is used as given; the general one gets `/v1/<signal>` appended.
pub fn http_target(vars: &dyn Vars, signal: Signal) -> Result<HttpTarget, String> {
    let url = match vars.get(&format!("OTEL_EXPORTER_OTLP_{}_ENDPOINT", signal.upper())) {
        Some(url) => url.trim().to_string(),
        None => {
            let base =
                vars.get("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_else(|| "http://localhost:4318".into());
            format!("{}{}", base.trim().trim_end_matches('/'), signal.path())
        }
    };
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(format!("OTLP endpoint {url:?} is not an http:// or https:// URL"));
    }
    let protocol = signal.var(vars, "PROTOCOL").unwrap_or_else(|| "http/protobuf".into());
    if protocol.trim() != "http/protobuf" {
        return Err(format!("OTLP protocol {protocol:?} is not supported (use http/protobuf)"));
    }
    let headers = match signal.var(vars, "HEADERS") {
        Some(list) => parse_headers(&list)?,
        None => Vec::new(),
    };
    let timeout = match signal.var(vars, "TIMEOUT") {
        Some(ms) => Duration::from_millis(
            ms.trim().parse().map_err(|_| format!("OTLP timeout {ms:?} is not a number of milliseconds"))?,
        ),
        None => DEFAULT_TIMEOUT,
    };
    let gzip = match signal.var(vars, "COMPRESSION").as_deref().map(str::trim) {
        None | Some("none") => false,
        Some("gzip") => true,
        Some(other) => return Err(format!("OTLP compression {other:?} is not supported (gzip or none)")),
    };
    Ok(HttpTarget { url, headers, timeout, gzip })
}

/// `key1=value1,key2=value2`, values percent-decoded (the W3C Baggage format the spec uses).
fn parse_headers(list: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for pair in list.split(',').filter(|p| !p.trim().is_empty()) {
        let (key, value) =
            pair.split_once('=').ok_or_else(|| format!("OTLP header {pair:?} is not key=value"))?;
        let key = key.trim();
        let value = percent_decode(value.trim());
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if key.is_empty() || !key.chars().all(token) || value.chars().any(|c| c.is_control()) {
            return Err(format!("OTLP header {pair:?} is not a valid header field"));
        }
        out.push((key.to_string(), value));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&'static str, &'static str)]) -> HashMap<&'static str, &'static str> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn nothing_starts_without_an_endpoint() {
        assert!(!enabled(&vars(&[])).any());
        assert!(!enabled(&vars(&[("OTEL_TRACES_SAMPLER", "always_on")])).any());
        let all = vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_SDK_DISABLED", "true")]);
        assert!(!enabled(&all).any());
    }

    #[test]
    fn traces_need_a_sampler_and_signals_can_be_turned_off() {
        let base = vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_LOGS_EXPORTER", "none")]);
        assert_eq!(enabled(&base), Enabled { traces: false, metrics: true, logs: false });
        let only_metrics = vars(&[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://c:4318/m")]);
        assert_eq!(enabled(&only_metrics), Enabled { traces: false, metrics: true, logs: false });
        let traced =
            vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"), ("OTEL_TRACES_SAMPLER", "always_on")]);
        assert_eq!(enabled(&traced), Enabled { traces: true, metrics: true, logs: true });
    }

    #[test]
    fn endpoints_follow_the_specification() {
        let general = vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/base/")]);
        assert_eq!(http_target(&general, Signal::Metrics).unwrap().url, "http://c:4318/base/v1/metrics");
        let specific = vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://wrong"),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://c:9/custom"),
        ]);
        assert_eq!(http_target(&specific, Signal::Metrics).unwrap().url, "http://c:9/custom");
        assert!(http_target(&vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "c:4318")]), Signal::Metrics).is_err());
        let grpc =
            vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]);
        assert!(http_target(&grpc, Signal::Metrics).is_err());
    }

    #[test]
    fn headers_timeout_and_compression() {
        let v = vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=a%20b, x-tenant=t1"),
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ]);
        let t = http_target(&v, Signal::Metrics).unwrap();
        assert_eq!(t.headers, vec![("api-key".into(), "a b".into()), ("x-tenant".into(), "t1".into())]);
        assert_eq!(t.timeout, Duration::from_millis(2500));
        assert!(t.gzip);
        let bad =
            vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"), ("OTEL_EXPORTER_OTLP_HEADERS", "a b=c")]);
        assert!(http_target(&bad, Signal::Metrics).is_err());
    }
}

//! The two text formats the endpoint offers: OpenMetrics, which
//! prometheus-client writes and Prometheus asks for (its Accept header
//! names `application/openmetrics-text`), and Prometheus' plain text format
//! 0.0.4 for everything else (curl, `promtool check metrics`, older
//! scrapers), rewritten from the former: a counter's `# HELP`/`# TYPE`
//! name gains its `_total`, an info family becomes a gauge named
//! `NAME_info`, `unknown` becomes `untyped`, and `# UNIT`/`# EOF` go.

use std::collections::BTreeMap;

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const PLAIN: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether a request's Accept header asks for OpenMetrics.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// OpenMetrics text as Prometheus' text format 0.0.4.
pub fn to_plain(openmetrics: &str) -> String {
    let mut kinds: BTreeMap<&str, &str> = BTreeMap::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, kind)) = rest.split_once(' ')
        {
            kinds.insert(name, kind);
        }
    }
    let renamed = |name: &str| match kinds.get(name) {
        Some(&"counter") => (format!("{name}_total"), "counter"),
        Some(&"info") => (format!("{name}_info"), "gauge"),
        Some(&"unknown") => (name.to_string(), "untyped"),
        Some(kind) => (name.to_string(), *kind),
        None => (name.to_string(), "untyped"),
    };
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.push_str(&format!("# HELP {} {help}\n", renamed(name).0));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split_once(' ').map_or(rest, |(n, _)| n);
            let (name, kind) = renamed(name);
            out.push_str(&format!("# TYPE {name} {kind}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_info_are_renamed_and_the_trailer_goes() {
        let om = "# HELP xlb_reloads Reloads.\n# TYPE xlb_reloads counter\nxlb_reloads_total{result=\"ok\"} 1\n# HELP xlb_build Version.\n# TYPE xlb_build info\nxlb_build_info{version=\"0.1.0\"} 1\n# HELP g A gauge.\n# TYPE g gauge\n# UNIT g bytes\ng 3\n# EOF\n";
        assert_eq!(
            to_plain(om),
            "# HELP xlb_reloads_total Reloads.\n# TYPE xlb_reloads_total counter\nxlb_reloads_total{result=\"ok\"} 1\n# HELP xlb_build_info Version.\n# TYPE xlb_build_info gauge\nxlb_build_info{version=\"0.1.0\"} 1\n# HELP g A gauge.\n# TYPE g gauge\ng 3\n"
        );
    }

    #[test]
    fn prometheus_gets_openmetrics_and_curl_plain_text() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wants_openmetrics(Some(prometheus)));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(None));
    }
}

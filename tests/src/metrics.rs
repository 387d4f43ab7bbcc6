//! Scraping a node's `/metrics` (plain HTTP/1.1 on loopback) and reading its samples.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The body of `GET url` (`http://127.0.0.1:PORT/metrics`), within 5 s.
pub async fn scrape(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("not an http URL: {url}"))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(host)
            .await
            .map_err(|e| format!("connect {host}: {e}"))?;
        let request = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("send: {e}"))?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8(response).map_err(|e| format!("not UTF-8: {e}"))?;
        let (head, body) = text.split_once("\r\n\r\n").ok_or("no end of headers")?;
        if !head.starts_with("HTTP/1.1 200") {
            return Err(format!("{url}: {head}"));
        }
        Ok(body.to_owned())
    };
    tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .map_err(|_| format!("{url} timed out"))?
}

/// The names of every family in an exposition (`# TYPE name kind` lines).
pub fn families(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The sum of the samples named `name` whose labels include every `key="value"` of `labels`;
/// `None` if there is none.
pub fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let (series, value) = match line.rsplit_once(' ') {
            Some(split) => split,
            None => continue,
        };
        let (sample, label_text) = match series.split_once('{') {
            Some((sample, rest)) => (sample, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if sample != name {
            continue;
        }
        let matches = labels
            .iter()
            .all(|(key, want)| label_text.contains(&format!("{key}=\"{want}\"")));
        if let (true, Ok(value)) = (matches, value.parse::<f64>()) {
            *found.get_or_insert(0.0) += value;
        }
    }
    found
}

/// The sample names of an exposition (`x_total`, `y_bucket`, …).
pub fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// The project's metric names a text mentions (a PromQL expression, a dashboard, rules): every
/// identifier starting with `ledger_` or `process_`. Prometheus's own (`up`) are not included.
pub fn metric_names_in(text: &str) -> BTreeSet<String> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find(|c: char| is_ident(c)) {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !is_ident(c)).unwrap_or(tail.len());
        let word = &tail[..end];
        let preceded = rest[..at].chars().last();
        // Not the end of a longer word (a label value "x_ledger_y" is one identifier anyway).
        if preceded.is_none_or(|c| !is_ident(c))
            && (word.starts_with("ledger_") || word.starts_with("process_"))
        {
            names.insert(word.to_owned());
        }
        rest = &tail[end..];
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_the_samples_a_label_subset_selects() {
        let text = "# TYPE x counter\nx_total{node_id=\"1\",code=\"OK\"} 3\n\
                    x_total{node_id=\"1\",code=\"UNAVAILABLE\"} 2\ny 7\n# EOF\n";
        assert_eq!(families(text), ["x"]);
        assert_eq!(sum(text, "x_total", &[]), Some(5.0));
        assert_eq!(sum(text, "x_total", &[("code", "OK")]), Some(3.0));
        assert_eq!(sum(text, "y", &[]), Some(7.0));
        assert_eq!(sum(text, "z", &[]), None);
        assert_eq!(
            sample_names(text).into_iter().collect::<Vec<_>>(),
            ["x_total", "y"]
        );
    }

    #[test]
    fn finds_the_project_metric_names_in_a_query() {
        let names = metric_names_in(
            "sum by (le) (rate(ledger_rpc_duration_seconds_bucket{method=\"x\"}[1m])) \
             / process_open_fds and up{job=\"admission-ledger\"}",
        );
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            ["ledger_rpc_duration_seconds_bucket", "process_open_fds"]
        );
    }
}

//! What the fuzz targets hold wkctl's parsers and editors to. An input is a file's text,
//! optionally followed by a NUL byte and a value the edit is asked to write (so odd values are
//! tried too). Every target: no panic. Every editor: the edit is refused, or it applies with
//! only its own part of the file changed: the rest of the document means the same, every
//! whole-line comment stays, the file's line endings stay, what was asked for is there, and
//! doing it again changes nothing.
//!
//! A broken property panics, which libFuzzer reports with the input that broke it.

use wk_compose::edit::{self, Selector};
use wk_compose::value::{parse, Yaml};

/// The file's text and the value to write (the default when there is none).
fn split<'a>(data: &'a [u8], default: &'a str) -> Option<(&'a str, &'a str)> {
    let text = std::str::from_utf8(data).ok()?;
    Some(match text.split_once('\0') {
        Some((t, v)) => (t, v),
        None => (text, default),
    })
}

/// The document with the value at `path` (a chain of mapping keys) taken out.
fn without(doc: &Yaml, path: &[&str]) -> Yaml {
    match (doc, path) {
        (Yaml::Map(m), [key]) => Yaml::Map(m.iter().filter(|(k, _)| k != key).cloned().collect()),
        (Yaml::Map(m), [key, rest @ ..]) => Yaml::Map(
            m.iter()
                .map(|(k, v)| {
                    if k == key {
                        (k.clone(), without(v, rest))
                    } else {
                        (k.clone(), v.clone())
                    }
                })
                .collect(),
        ),
        _ => doc.clone(),
    }
}

fn canonical(doc: &Yaml) -> String {
    let mut s = String::new();
    doc.canonical(&mut s);
    s
}

/// Every whole-line comment of `old` is in `new` as often.
fn comments_kept(old: &str, new: &str) {
    let count = |t: &str, c: &str| t.lines().filter(|l| l.trim() == c).count();
    for l in old.lines().map(str::trim).filter(|l| l.starts_with('#')) {
        assert!(
            count(new, l) >= count(old, l),
            "the comment `{l}` was lost:\n--- old\n{old}\n--- new\n{new}"
        );
    }
}

/// A file whose every line ends in CRLF keeps CRLF on every line, and a file's last line keeps
/// its newline or its lack of one.
fn endings_kept(old: &str, new: &str) {
    let lines = old.matches('\n').count();
    if lines > 0 && old.matches("\r\n").count() == lines {
        assert_eq!(
            new.matches('\n').count(),
            new.matches("\r\n").count(),
            "CRLF endings mixed with LF:\n{new:?}"
        );
    }
    if !old.is_empty() && !new.is_empty() {
        assert_eq!(
            old.ends_with('\n'),
            new.ends_with('\n'),
            "the final newline changed:\n{new:?}"
        );
    }
}

/// The inventory parser: any text is an inventory or a list of diagnostics.
pub fn inventory(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = wk_plan::Inventory::parse("cluster.yml", text);
    }
}

/// `set_env` on the WuKongIM service (found by image), as the plan sets node1's addresses.
pub fn compose_env(data: &[u8]) {
    let Some((old, value)) = split(data, "10.0.0.11:11110") else {
        return;
    };
    let sel = Selector::ImageName("wukongim".into());
    let env = vec![
        ("WK_CLUSTER_SERVERADDR".to_string(), value.to_string()),
        (
            "WK_EXTERNAL_WSADDR".to_string(),
            "ws://203.0.113.10:15200".to_string(),
        ),
    ];
    let Ok(new) = edit::set_env(old, &sel, &env) else {
        return;
    };
    let service = edit::find_service(old, &sel).expect("an edit that applied found its service");
    let (Ok(before), Ok(after)) = (parse(old), parse(&new)) else {
        panic!("the edited file does not parse:\n{new}");
    };
    assert_eq!(
        edit::find_service(&new, &sel).as_deref(),
        Ok(service.as_str()),
        "{new}"
    );
    let now = edit::service_env(&after, &service);
    for (k, v) in &env {
        assert_eq!(
            now.iter().rev().find(|(nk, _)| nk == k).map(|(_, nv)| nv),
            Some(v),
            "{k} is not {v:?}:\n{new}"
        );
    }
    for (k, v) in edit::service_env(&before, &service) {
        if !env.iter().any(|(ek, _)| *ek == k) {
            assert!(
                now.contains(&(k.clone(), v.clone())),
                "{k}={v} was lost:\n{new}"
            );
        }
    }
    let path = ["services", service.as_str(), "environment"];
    assert_eq!(
        canonical(&without(&before, &path)),
        canonical(&without(&after, &path)),
        "more than the environment changed:\n--- old\n{old}\n--- new\n{new}"
    );
    comments_kept(old, &new);
    endings_kept(old, &new);
    assert_eq!(edit::set_env(&new, &sel, &env).as_deref(), Ok(new.as_str()));
}

/// `set_service` adding (or replacing) the load balancer's nginx service.
pub fn compose_service(data: &[u8]) {
    let Some((old, image)) = split(
        data,
        "registry.cn-shanghai.aliyuncs.com/wukongim/nginx:1.27.0",
    ) else {
        return;
    };
    if image.contains(['\n', '\r']) {
        return;
    }
    let body = format!(
        "image: \"{}\"\nrestart: always\nports:\n  - \"15001:5001\" # HTTP API\n",
        image.replace('\\', "\\\\").replace('"', "\\\"")
    );
    let Ok(wanted) = parse(&body) else { return };
    let Ok(new) = edit::set_service(old, "nginx", &body) else {
        return;
    };
    let Ok(after) = parse(&new) else {
        panic!("the edited file does not parse:\n{new}");
    };
    assert_eq!(
        after
            .get("services")
            .and_then(|s| s.get("nginx"))
            .map(canonical),
        Some(canonical(&wanted)),
        "the service is not as asked:\n{new}"
    );
    if let Ok(before) = parse(old) {
        let path = ["services", "nginx"];
        assert_eq!(
            canonical(&without(&before, &path)),
            canonical(&without(&after, &path)),
            "more than the nginx service changed:\n--- old\n{old}\n--- new\n{new}"
        );
        // Comments inside a replaced nginx service go with it.
        if before
            .get("services")
            .and_then(|s| s.get("nginx"))
            .is_none()
        {
            comments_kept(old, &new);
        }
    }
    endings_kept(old, &new);
    assert_eq!(
        edit::set_service(&new, "nginx", &body).as_deref(),
        Ok(new.as_str())
    );
}

/// `set_prometheus_jobs` adding a node's scrape job.
pub fn prometheus_jobs(data: &[u8]) {
    let Some((old, target)) = split(data, "10.0.0.12:5300") else {
        return;
    };
    if target.contains(['\n', '\r']) {
        return;
    }
    let jobs = format!(
        "- job_name: wukongim-1002-trace-metrics\n  static_configs:\n    - targets: [\"{}\"]\n      labels:\n        id: \"1002\"\n",
        target.replace('\\', "\\\\").replace('"', "\\\"")
    );
    let Ok(new) = edit::set_prometheus_jobs(old, &jobs) else {
        return;
    };
    let Ok(after) = parse(&new) else {
        panic!("the edited file does not parse:\n{new}");
    };
    let names = |doc: &Yaml| -> Vec<String> {
        match doc.get("scrape_configs") {
            Some(Yaml::Seq(s)) => s
                .iter()
                .filter_map(|j| j.get("job_name").and_then(Yaml::scalar))
                .collect(),
            _ => Vec::new(),
        }
    };
    assert!(
        names(&after)
            .iter()
            .any(|n| n == "wukongim-1002-trace-metrics")
            || after
                .get("scrape_configs")
                .is_some_and(|s| { canonical(s).contains(&format!("{:?}", "1002")) }),
        "the job is not there:\n{new}"
    );
    if let Ok(before) = parse(old) {
        assert_eq!(
            canonical(&without(&before, &["scrape_configs"])),
            canonical(&without(&after, &["scrape_configs"])),
            "more than scrape_configs changed:\n--- old\n{old}\n--- new\n{new}"
        );
        // Every job that was there stays, unless it was ours by name.
        if let Some(Yaml::Seq(jobs)) = before.get("scrape_configs") {
            let now = canonical(after.get("scrape_configs").unwrap_or(&Yaml::Null));
            for j in jobs {
                let ours = j.get("job_name").and_then(Yaml::scalar).as_deref()
                    == Some("wukongim-1002-trace-metrics");
                assert!(
                    ours || now.contains(&canonical(j)),
                    "a job was lost:\n--- old\n{old}\n--- new\n{new}"
                );
            }
        }
    }
    // Comments inside a stale job of ours (same name, other content) go with it.
    let ours_there =
        parse(old).is_ok_and(|b| names(&b).iter().any(|n| n == "wukongim-1002-trace-metrics"));
    if !ours_there {
        comments_kept(old, &new);
    }
    endings_kept(old, &new);
    assert_eq!(
        edit::set_prometheus_jobs(&new, &jobs).as_deref(),
        Ok(new.as_str())
    );
}

/// `set_upstream_servers`: the members in nginx.conf's upstreams. It only adds `server` lines:
/// every line of the file stays, in order.
pub fn nginx_upstreams(data: &[u8]) {
    let Some((old, server)) = split(data, "10.0.0.12:5001") else {
        return;
    };
    if server.contains(['\n', '\r', ';', '{', '}', '#']) || server.trim().is_empty() {
        return;
    }
    let wanted = vec![(
        "wukongimapi".to_string(),
        vec!["10.0.0.11:5001".to_string(), server.trim().to_string()],
    )];
    let Ok(new) = wk_compose::nginx::set_upstream_servers(old, &wanted) else {
        return;
    };
    let ups = wk_compose::nginx::upstream_servers(&new).expect("the edited file parses");
    let servers = ups
        .iter()
        .find(|(n, _)| n == "wukongimapi")
        .map(|(_, s)| s.clone())
        .unwrap_or_default();
    for s in &wanted[0].1 {
        assert!(servers.contains(s), "{s} is not served:\n{new}");
    }
    let mut rest = new.lines();
    for l in old.lines() {
        assert!(
            rest.by_ref().any(|n| n == l),
            "the line `{l}` was changed or moved:\n--- old\n{old}\n--- new\n{new}"
        );
    }
    for l in new.lines() {
        if !old.lines().any(|o| o == l) {
            assert!(
                l.trim().starts_with("server "),
                "an added line is not a server line: `{l}`\n{new}"
            );
        }
    }
    endings_kept(old, &new);
    assert_eq!(
        wk_compose::nginx::set_upstream_servers(&new, &wanted).as_deref(),
        Ok(new.as_str())
    );
}

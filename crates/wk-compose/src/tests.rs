//! Edits against fixture files: `tests/fixtures/compose/<case>/in/<file>`, the edit in
//! `edit.yml`, and `out/<file>` (the expected bytes) or `out/error.txt` (a part of the expected
//! refusal). `WKCTL_BLESS=1` rewrites `out/<file>` (review the diff).

use std::path::{Path, PathBuf};

use crate::edit::{set_env, set_prometheus_jobs, set_service, Selector};
use crate::nginx::set_upstream_servers;
use crate::value::{parse, Yaml};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/compose")
}

fn run_case(case: &str) {
    let d = dir().join(case);
    let edit = parse(&std::fs::read_to_string(d.join("edit.yml")).unwrap()).unwrap();
    let input = std::fs::read_dir(d.join("in"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let name = input.file_name().unwrap().to_str().unwrap().to_string();
    let text = std::fs::read_to_string(&input).unwrap();
    let result = if let Some(env) = edit.get("env") {
        let sel = match env.get("select").unwrap() {
            y if y.get("image_name").is_some() => {
                Selector::ImageName(y.get("image_name").unwrap().scalar().unwrap())
            }
            y => Selector::Name(y.get("name").unwrap().scalar().unwrap()),
        };
        let Some(Yaml::Map(set)) = env.get("set") else {
            panic!("{case}: env.set")
        };
        let pairs: Vec<(String, String)> = set
            .iter()
            .map(|(k, v)| (k.clone(), v.scalar().unwrap()))
            .collect();
        set_env(&text, &sel, &pairs)
    } else if let Some(svc) = edit.get("service") {
        set_service(
            &text,
            &svc.get("name").unwrap().scalar().unwrap(),
            &svc.get("body").unwrap().scalar().unwrap(),
        )
    } else if let Some(Yaml::Map(ups)) = edit.get("upstreams") {
        let wanted: Vec<(String, Vec<String>)> = ups
            .iter()
            .map(|(k, v)| {
                let Yaml::Seq(s) = v else {
                    panic!("{case}: upstreams.{k}")
                };
                (k.clone(), s.iter().map(|x| x.scalar().unwrap()).collect())
            })
            .collect();
        set_upstream_servers(&text, &wanted)
    } else {
        set_prometheus_jobs(&text, &edit.get("jobs").unwrap().scalar().unwrap())
    };
    let err_file = d.join("out/error.txt");
    if err_file.exists() {
        let want = std::fs::read_to_string(&err_file).unwrap();
        let err = result
            .expect_err(&format!("{case}: expected a refusal"))
            .to_string();
        assert!(
            err.contains(want.trim()),
            "{case}: `{err}` does not say `{}`",
            want.trim()
        );
        return;
    }
    let got = result.unwrap_or_else(|e| panic!("{case}: {e}"));
    let out = d.join("out").join(&name);
    if std::env::var_os("WKCTL_BLESS").is_some() {
        std::fs::write(&out, &got).unwrap();
    }
    let want = std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    assert!(got == want, "{case}: differs from out/{name}:\n{got}");
}

macro_rules! cases {
    ($($name:ident),*) => {
        $(#[test] fn $name() { run_case(&stringify!($name).replace('_', "-")); })*
        #[test]
        fn every_fixture_has_a_test() {
            let mut named = vec![$(stringify!($name).replace('_', "-")),*];
            named.sort();
            let mut dirs: Vec<String> = std::fs::read_dir(dir()).unwrap().map(|e| e.unwrap().file_name().to_str().unwrap().to_string()).collect();
            dirs.sort();
            assert_eq!(named, dirs);
        }
    };
}

cases!(
    singlenode_env,
    env_empty_item,
    env_duplicate_key,
    map_env_wukongim1,
    add_nginx,
    replace_nginx,
    prometheus_add,
    prometheus_no_final_newline,
    prometheus_by_hand,
    prometheus_grow,
    refuse_flow_env,
    refuse_anchor,
    refuse_prometheus_multiline,
    no_wukongim,
    two_wukongim,
    nginx_by_hand,
    nginx_dollar_brace,
    nginx_as_wanted,
    nginx_empty_upstream,
    nginx_stream_only_tcp,
    refuse_nginx_no_upstream,
    refuse_nginx_include,
    refuse_nginx_one_line,
    refuse_nginx_unclosed,
    refuse_nginx_twice,
    crlf_env,
    crlf_service,
    crlf_prometheus,
    crlf_nginx
);

#[test]
fn a_second_edit_changes_nothing() {
    let d = dir().join("singlenode-env");
    let text = std::fs::read_to_string(d.join("in/docker-compose.yml")).unwrap();
    let env = vec![
        (
            "WK_CLUSTER_APIURL".to_string(),
            "http://10.0.0.11:5001".to_string(),
        ),
        ("WK_NEW".to_string(), "x y".to_string()),
    ];
    let sel = Selector::ImageName("wukongim".into());
    let once = set_env(&text, &sel, &env).unwrap();
    assert_eq!(set_env(&once, &sel, &env).unwrap(), once);
    assert!(once.contains("      - \"WK_NEW=x y\"\n"), "{once}");
    let body = "image: nginx\nports: [\"1:1\"]\n";
    let with = set_service(&text, "nginx", body).unwrap();
    assert_eq!(set_service(&with, "nginx", body).unwrap(), with);
    let jobs = "- job_name: j\n  static_configs:\n    - targets: ['a:1']\n";
    let p = "scrape_configs:\n  - job_name: x\n    static_configs:\n      - targets: ['b:2']\n";
    let once = set_prometheus_jobs(p, jobs).unwrap();
    assert_eq!(set_prometheus_jobs(&once, jobs).unwrap(), once);
}

#[test]
fn only_the_intended_lines_change() {
    let d = dir().join("singlenode-env");
    let before = std::fs::read_to_string(d.join("in/docker-compose.yml")).unwrap();
    let after = std::fs::read_to_string(d.join("out/docker-compose.yml")).unwrap();
    let b: Vec<&str> = before.lines().collect();
    let a: Vec<&str> = after.lines().collect();
    let removed: Vec<&&str> = b.iter().filter(|l| !a.contains(l)).collect();
    let added: Vec<&&str> = a.iter().filter(|l| !b.contains(l)).collect();
    // WK_CLUSTER_SERVERADDR already had its value: only APIURL changes, and two entries come.
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert!(removed[0].contains("WK_CLUSTER_APIURL"));
    assert_eq!(added.len(), 3, "{added:?}");
    assert!(
        added.iter().any(|l| l.trim()
            == "- \"WK_CLUSTER_APIURL=http://10.0.0.11:5001\" # intranet address of the API"),
        "comments stay: {added:?}"
    );
}

/// What the fuzzers found in nginx.conf's reader, as a test: an escaped character of more than
/// one byte inside quotes, or in a word, is read whole (it panicked on a char boundary).
#[test]
fn nginx_escapes_of_multibyte_characters() {
    let wanted = vec![(
        "wukongimapi".to_string(),
        vec!["10.0.0.12:5001".to_string()],
    )];
    for conf in [
        "http {\n    upstream wukongimapi {\n        server 10.0.0.11:5001;\n    }\n    log_format x '\\ߛ';\n}\n",
        "http {\n    upstream wukongimapi {\n        server 10.0.0.11:5001;\n    }\n    log_format x a\\ߛb;\n}\n",
    ] {
        let out = set_upstream_servers(conf, &wanted).unwrap();
        assert!(out.contains("        server 10.0.0.12:5001;\n"), "{out}");
    }
}

/// A member line whose parameters cannot be written back as read (a quoted word over two
/// lines, found by the fuzzer): the new line copies only the plain ones.
#[test]
fn nginx_copies_only_plain_parameters() {
    let wanted = vec![(
        "wukongimapi".to_string(),
        vec!["10.0.0.11:5001".to_string(), "10.0.0.12:5001".to_string()],
    )];
    let conf = "http {\n    upstream wukongimapi {\n        server 10.0.0.11:5001 max_fails=3 \"odd\nword\";\n    }\n}\n";
    let out = set_upstream_servers(conf, &wanted).unwrap();
    assert!(
        out.contains("\n        server 10.0.0.12:5001 max_fails=3;\n"),
        "{out}"
    );
}

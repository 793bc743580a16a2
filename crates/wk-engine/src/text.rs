//! Text the engine reads and shows: addresses, a node's compose file, diffs.

use wk_compose::{edit, Selector};
use wk_plan::inventory::Node;

/// Host and port of an `http://host:port/…` URL (port 80 when it names none).
pub(crate) fn url_host_port(url: &str) -> (String, u16) {
    split_addr(
        url.trim_start_matches("http://")
            .trim_start_matches("https://")
            .split('/')
            .next()
            .unwrap_or(""),
    )
}

pub(crate) fn split_addr(addr: &str) -> (String, u16) {
    let (h, p) = addr.rsplit_once(':').unwrap_or((addr, "80"));
    (
        h.trim_start_matches('[').trim_end_matches(']').to_string(),
        p.parse().unwrap_or(80),
    )
}

/// A node's docker-compose.yml.
pub(crate) fn compose_path(node: &Node) -> String {
    format!(
        "{}/docker-compose.yml",
        node.install_dir.trim_end_matches('/')
    )
}

/// The environment of the service running the WuKongIM image (found by image), in file order.
pub(crate) fn wukongim_env(compose: &str) -> Vec<(String, String)> {
    match (
        edit::find_service(compose, &Selector::ImageName("wukongim".into())),
        wk_compose::value::parse(compose),
    ) {
        (Ok(s), Ok(doc)) => edit::service_env(&doc, &s),
        _ => Vec::new(),
    }
}

/// WuKongIM settings that belong to one node: never carried from a member to a new node (the
/// plan writes the new node's own).
pub const NODE_SPECIFIC: &[&str] = &[
    "WK_CLUSTER_NODEID",
    "WK_CLUSTER_SERVERADDR",
    "WK_CLUSTER_APIURL",
    "WK_CLUSTER_ADDR",
    "WK_CLUSTER_SEED",
    "WK_CLUSTER_INITNODES",
    "WK_CLUSTER_ROLE",
    "WK_EXTERNAL_IP",
    "WK_INTRANET_TCPADDR",
    "WK_ROOTDIR",
];

/// Settings wkctl writes on every node from the inventory (the load balancer's addresses, the
/// cluster's Prometheus), and `WK_MANAGERTOKEN`, which v2 clusters do not support (#159, #533):
/// never carried either.
pub const NOT_CARRIED: &[&str] = &[
    "WK_EXTERNAL_WSADDR",
    "WK_EXTERNAL_TCPADDR",
    "WK_TRACE_PROMETHEUSAPIURL",
    "WK_MANAGERTOKEN",
];

/// A member's cluster-wide settings: its `wk.yaml`'s (as WuKongIM names them in the
/// environment: `tokenAuthOn` is `WK_TOKENAUTHON`, `webhook.httpAddr` `WK_WEBHOOK_HTTPADDR`),
/// then its WuKongIM service's `WK_*` environment over them, in that order, without the
/// node-specific ones.
pub(crate) fn cluster_settings(compose: &str, wk_yaml: Option<&str>) -> Vec<(String, String)> {
    use wk_compose::value::Yaml;
    fn walk(prefix: &str, v: &Yaml, out: &mut Vec<(String, String)>) {
        match v {
            Yaml::Map(m) => {
                for (k, v) in m {
                    walk(&format!("{prefix}_{}", k.to_uppercase()), v, out);
                }
            }
            Yaml::Seq(_) | Yaml::Null => {}
            other => out.push((prefix.to_string(), other.scalar().unwrap_or_default())),
        }
    }
    let mut out = Vec::new();
    if let Some(doc) = wk_yaml.and_then(|y| wk_compose::value::parse(y).ok()) {
        walk("WK", &doc, &mut out);
    }
    for (k, v) in wukongim_env(compose) {
        match out.iter_mut().find(|(x, _)| *x == k) {
            Some(e) => e.1 = v,
            None => out.push((k, v)),
        }
    }
    out.retain(|(k, _)| {
        k.starts_with("WK_")
            && !NODE_SPECIFIC.contains(&k.as_str())
            && !NOT_CARRIED.contains(&k.as_str())
    });
    out
}

/// WuKongIM's home in its image: the docs bind-mount `./wukongim_data` there.
const HOME: &str = "/root/wukongim";

/// Where the WuKongIM service (found by image) keeps its data on the host: the source of its
/// bind mount at /root/wukongim, as the compose file writes it. `Err`: why recreating the
/// container could lose or hide the node's data (a named volume gets the image's own wk.yaml,
/// whose rootDir is outside it; no volume keeps the data in the container).
pub(crate) fn data_mount(compose: &str) -> Result<String, String> {
    use wk_compose::value::Yaml;
    let service = edit::find_service(compose, &Selector::ImageName("wukongim".into()))
        .map_err(|e| e.to_string())?;
    let doc = wk_compose::value::parse(compose)?;
    let svc = doc.get("services").and_then(|x| x.get(&service));
    let env = edit::service_env(&doc, &service);
    if let Some((_, root)) = env.iter().find(|(k, _)| k == "WK_ROOTDIR") {
        root_dir_inside(root).map_err(|e| format!("service `{service}`: WK_ROOTDIR {e}"))?;
    }
    let volumes = match svc.and_then(|x| x.get("volumes")) {
        Some(Yaml::Seq(v)) => v.clone(),
        _ => Vec::new(),
    };
    for v in &volumes {
        let (source, target, bind) = match v {
            Yaml::Str(short) => {
                let mut parts = short.splitn(3, ':');
                let source = parts.next().unwrap_or_default().to_string();
                let target = parts.next().unwrap_or_default().to_string();
                let bind = source.starts_with(['/', '.', '~']);
                (source, target, bind)
            }
            long @ Yaml::Map(_) => {
                let get = |k: &str| long.get(k).and_then(Yaml::scalar).unwrap_or_default();
                (get("source"), get("target"), get("type") == "bind")
            }
            _ => continue,
        };
        if target.trim_end_matches('/') != HOME {
            continue;
        }
        if !bind {
            return Err(format!("service `{service}` keeps {HOME} in the named volume `{source}`: Docker copies the image's wk.yaml into it, whose rootDir (./wukongimdata) is outside the volume, so the data is in the container and recreating it loses it"));
        }
        return Ok(source);
    }
    Err(format!("service `{service}` mounts no host directory at {HOME}: its data is in the container, and recreating it loses it"))
}

/// Whether a `rootDir` keeps the data in the mounted home (relative ones are relative to the
/// image's working directory, /home: outside it).
pub(crate) fn root_dir_inside(root: &str) -> Result<(), String> {
    let root = root.trim().trim_matches(['"', '\'']);
    if root.is_empty() || root == HOME || root.starts_with(&format!("{HOME}/")) {
        return Ok(());
    }
    Err(format!("`{root}` puts the data outside {HOME}, the directory mounted from the host: recreating the container would lose or hide it"))
}

/// A unified diff of a file, now and after.
pub(crate) fn unified(path: &str, old: &str, new: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(2)
        .header(&format!("{path} (now)"), &format!("{path} (after)"))
        .to_string()
}

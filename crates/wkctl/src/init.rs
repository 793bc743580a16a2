//! `wkctl init --from HOST`: an inventory written from what a running single node has.

use std::io::Write;
use std::sync::Arc;

use wk_compose::{edit, Selector};
use wk_remote::ssh::{Hop, HostKeyPolicy, SshOptions};
use wk_remote::Remote;

use crate::cli::{Cli, InitArgs};
use crate::{output, Failure};

fn placeholder(v: &str) -> bool {
    v.is_empty() || v.contains("xx") || v.contains("xxx")
}

pub fn run(cli: &Cli, args: &InitArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let path = &cli.inventory;
    if path.exists() && !args.force {
        return Err(Failure::bad_input(format!("{} exists; wkctl init does not overwrite it\n  fix: add --force, or write elsewhere with -i FILE", path.display())));
    }
    let hop = Hop::parse(&args.from).map_err(|e| Failure::bad_input(format!("--from {e}")))?;
    let compose_path = format!("{}/docker-compose.yml", args.dir.trim_end_matches('/'));
    let (text, user) = fetch(args, &hop, &compose_path)?;
    let node = Found::read(&text, &compose_path, &hop)?;
    let y = inventory_text(args, &hop, user, &compose_path, &node);
    // What we write must be an inventory wkctl reads.
    wk_plan::Inventory::parse(&path.display().to_string(), &y).map_err(|d| Failure {
        code: 1,
        message: format!("the inventory wkctl made does not read back (a bug):\n{d}"),
    })?;
    std::fs::write(path, &y)
        .map_err(|e| Failure::bad_input(format!("cannot write {}: {e}", path.display())))?;
    let _ = writeln!(out, "wrote {}: node1 (id {}, {}); add the new nodes under `nodes:`, then `wkctl check --add node2`", path.display(), node.id, node.internal);
    Ok(())
}

/// The running node's compose file and the SSH user's name, read over SSH.
fn fetch(
    args: &InitArgs,
    hop: &Hop,
    compose_path: &str,
) -> Result<(String, Option<String>), Failure> {
    let mut o = SshOptions::new("node1", hop.host.clone());
    o.user = hop.user.clone();
    o.port = hop.port;
    o.identity_files = args.identity.clone();
    if let Some(k) = &args.known_hosts {
        o.known_hosts.insert(0, k.clone());
    }
    if args.accept_new {
        o.host_key_policy = HostKeyPolicy::AcceptNew;
    }
    let rt = crate::runtime()?;
    let (text, user) = rt
        .block_on(async {
            let r = wk_remote::SshRemote::connect(o, Arc::new(output::TtyPrompter)).await?;
            let f = r.read_file(compose_path).await?;
            let user = r
                .run(wk_remote::ExecRequest::new("id -un"))
                .await
                .map(|o| o.stdout_str().trim().to_string())
                .ok();
            r.close().await;
            Ok::<_, wk_remote::RemoteError>((f, user))
        })
        .map_err(|e| Failure {
            code: 3,
            message: e.to_string(),
        })?;
    let text = text.ok_or_else(|| Failure {
        code: 3,
        message: format!(
            "node1: {compose_path} does not exist\n  fix: name the install directory with --dir"
        ),
    })?;
    Ok((String::from_utf8_lossy(&text.content).into_owned(), user))
}

/// What the running node's compose file tells of it, with a note on where each address came
/// from (or what to check).
struct Found {
    service: String,
    image: String,
    id: String,
    internal: String,
    internal_note: String,
    external: String,
    external_note: String,
}

impl Found {
    fn read(text: &str, compose_path: &str, hop: &Hop) -> Result<Found, Failure> {
        let bad = |e: String| Failure {
            code: 3,
            message: format!("node1: {compose_path}: {e}"),
        };
        let service = edit::find_service(text, &Selector::ImageName("wukongim".into()))
            .map_err(|e| bad(e.to_string()))?;
        let doc = wk_compose::value::parse(text).map_err(|e| bad(e.to_string()))?;
        let env = edit::service_env(&doc, &service);
        let get = |k: &str| {
            env.iter()
                .find(|(ek, _)| ek == k)
                .map(|(_, v)| v.trim().to_string())
                .filter(|v| !placeholder(v))
        };
        let image = doc
            .get("services")
            .and_then(|s| s.get(&service))
            .and_then(|s| s.get("image"))
            .and_then(|i| i.scalar())
            .unwrap_or_default();
        let id = get("WK_CLUSTER_NODEID").unwrap_or_else(|| "1001".into());
        let server = get("WK_CLUSTER_SERVERADDR")
            .and_then(|a| a.rsplit_once(':').map(|(h, _)| h.to_string()));
        let (internal, internal_note) = match server {
            Some(s) => (s, "from WK_CLUSTER_SERVERADDR".to_string()),
            None => (hop.host.clone(), "TODO: WK_CLUSTER_SERVERADDR is not set; the SSH address is used: check it is the intranet address".to_string()),
        };
        let (external, external_note) = match get("WK_EXTERNAL_IP") {
            Some(e) => (e, "from WK_EXTERNAL_IP".to_string()),
            None => (
                internal.clone(),
                "TODO: WK_EXTERNAL_IP is not set: put the address clients use".to_string(),
            ),
        };
        Ok(Found {
            service,
            image,
            id,
            internal,
            internal_note,
            external,
            external_note,
        })
    }
}

/// The inventory, with a comment on every value the operator should check.
fn inventory_text(
    args: &InitArgs,
    hop: &Hop,
    user: Option<String>,
    compose_path: &str,
    n: &Found,
) -> String {
    let (service, image, id, internal) = (&n.service, &n.image, &n.id, &n.internal);
    let (external, internal_note, external_note) =
        (&n.external, &n.internal_note, &n.external_note);
    let mut y = String::new();
    y.push_str(&format!(
        "# Written by `wkctl init --from {}` from {compose_path}\n",
        args.from
    ));
    y.push_str(&format!("# (service `{service}`, found by its image). Check the TODOs, then add the nodes to add under\n# `nodes:`. Every field is described in docs/inventory.md.\n"));
    y.push_str("cluster: wukongim                  # TODO: a name for this cluster\n");
    y.push_str("ssh:\n");
    if let Some(u) = hop.user.clone().or(user) {
        y.push_str(&format!("  user: {u}\n"));
    }
    if let Some(p) = hop.port {
        y.push_str(&format!("  port: {p}\n"));
    }
    if !args.identity.is_empty() {
        let ids: Vec<String> = args
            .identity
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        y.push_str(&format!("  identity_files: [{}]\n", ids.join(", ")));
    }
    if let Some(k) = &args.known_hosts {
        y.push_str(&format!("  known_hosts: {}\n", k.display()));
    }
    y.push_str("  host_key_policy: strict           # unknown host keys are refused\n");
    y.push_str("  sudo: none                         # TODO: `passwordless` or `password` if docker needs sudo\n");
    y.push_str(&format!("install_dir: {}\n", args.dir));
    y.push_str(&format!(
        "image: {image}   # what node1 runs; new nodes get the same\n"
    ));
    y.push_str(
        "gateway:                           # node1 will run the load balancer and Prometheus\n",
    );
    y.push_str(&format!(
        "  node: node1\n  external_address: {external}   # {external_note}\n"
    ));
    y.push_str("seed: node1\nnodes:\n");
    y.push_str(&format!("  - name: node1\n    id: {id}                         # WK_CLUSTER_NODEID\n    internal_address: {internal}   # {internal_note}\n    external_address: {external}\n"));
    if *internal != hop.host {
        y.push_str(&format!(
            "    ssh: {{ host: {} }}             # how this laptop reaches it\n",
            hop.host
        ));
    }
    let next: u32 = id.parse::<u32>().map(|i| i + 1).unwrap_or(1002);
    y.push_str(&format!("  # - name: node2                    # TODO: the node to add\n  #   id: {next}\n  #   internal_address: <its intranet address>\n"));
    y
}

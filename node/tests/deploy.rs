//! `deploy/`, checked without a container runtime (none runs on these machines): every
//! setting the compose file, the Kubernetes manifests and the Dockerfile give the binary passes
//! its own `chatsdk config check`; their addresses, ports, probes and names agree with each
//! other; the dashboard and the exposition name only documented metrics; and the local script
//! starts the compose file's three nodes as processes until the cluster reports them healthy.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_yaml::Value;

const BIN: &str = env!("CARGO_BIN_EXE_chatsdk");
const SAMPLE_ADMIN_KEY: &str = "sample-admin-key-for-deploy-tests";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `chatsdk config check <args>` with exactly `env` as its `CHATSDK_` variables.
fn config_check(args: &[String], env: &BTreeMap<String, String>) -> (bool, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["config", "check"]).args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("CHATSDK_") {
            cmd.env_remove(name);
        }
    }
    cmd.envs(env);
    let out = cmd.output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// A compose value with `${NAME...}` interpolated from the sample environment.
fn interpolate(raw: &str) -> String {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after.find('}').expect("closed ${...}");
        let name: String = after[..end]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        match name.as_str() {
            "CHATSDK_ADMIN_KEY" => out.push_str(SAMPLE_ADMIN_KEY),
            other => panic!("compose uses ${{{other}}}: give the test a sample for it"),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// The `serve` arguments after the subcommand (the entrypoint is the binary).
fn serve_args(command: &[String]) -> Vec<String> {
    assert_eq!(
        command.first().map(String::as_str),
        Some("serve"),
        "{command:?}"
    );
    command[1..].to_vec()
}

#[test]
fn every_compose_node_passes_config_check_and_the_files_agree() {
    let mut compose: Value = serde_yaml::from_str(&read("deploy/compose.yaml")).unwrap();
    compose.apply_merge().unwrap();
    let services = compose["services"].as_mapping().unwrap();
    let subnet = str_of(&compose["networks"]["chatsdk"]["ipam"]["config"][0]["subnet"]);
    let prefix = subnet.trim_end_matches("0/24");
    let mut nodes = BTreeSet::new();
    for (name, service) in services {
        let name = str_of(name);
        let Some(env) = service["environment"].as_mapping() else {
            continue;
        };
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (str_of(k), interpolate(&str_of(v))))
            .filter(|(k, _)| k.starts_with("CHATSDK_"))
            .collect();
        if env.is_empty() {
            continue;
        }
        nodes.insert(name.clone());
        let command: Vec<String> = service["command"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(str_of)
            .collect();
        let (ok, text) = config_check(&serve_args(&command), &env);
        assert!(ok, "{name}: {text}");
        // Its advertised address is its fixed address on the network, in the subnet.
        let ip = str_of(&service["networks"]["chatsdk"]["ipv4_address"]);
        assert!(ip.starts_with(prefix), "{name}: {ip} outside {subnet}");
        assert_eq!(
            env["CHATSDK_CLUSTER__ADVERTISE"],
            format!("{ip}:7400"),
            "{name}"
        );
        // The published port is the HTTP listener's.
        let port = str_of(&service["ports"][0]);
        assert!(port.ends_with(":8080"), "{name}: {port}");
        assert!(env["CHATSDK_SERVER__HTTP"].ends_with(":8080"), "{name}");
        // The join target and the token URL name a node of the file.
        let join_host = env["CHATSDK_CLUSTER__JOIN"]
            .split(':')
            .next()
            .unwrap()
            .to_string();
        assert!(
            services.contains_key(join_host.as_str()),
            "{name}: {join_host}"
        );
        assert_eq!(
            env["CHATSDK_CLUSTER__JOIN_TOKEN_URL"],
            format!("http://{join_host}:8080")
        );
    }
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    // Prometheus scrapes every node.
    let prom: Value = serde_yaml::from_str(&read("deploy/prometheus/prometheus.yml")).unwrap();
    let targets: BTreeSet<String> = prom["scrape_configs"][0]["static_configs"][0]["targets"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(str_of)
        .collect();
    let want: BTreeSet<String> = nodes.iter().map(|n| format!("{n}:8080")).collect();
    assert_eq!(targets, want);
    assert_eq!(
        str_of(&prom["scrape_configs"][0]["metrics_path"]),
        "/metrics"
    );
}

#[test]
fn the_kubernetes_statefulset_passes_config_check_and_the_objects_agree() {
    let text = read("deploy/k8s/chatsdk.yaml");
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .collect();
    let by_kind = |kind: &str| -> Vec<&Value> {
        docs.iter()
            .filter(|d| d["kind"].as_str() == Some(kind))
            .collect()
    };
    let config_map = by_kind("ConfigMap")[0];
    let secret = by_kind("Secret")[0];
    let set = by_kind("StatefulSet")[0];
    let pod = &set["spec"]["template"]["spec"];
    let container = &pod["containers"][0];

    // The ConfigMap's files where the pod mounts them, in a directory of the test's.
    let dir = tempfile::tempdir().unwrap();
    let mounts: BTreeMap<String, String> = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| (str_of(&m["name"]), str_of(&m["mountPath"])))
        .collect();
    let config_volume = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["configMap"]["name"] == config_map["metadata"]["name"])
        .expect("the ConfigMap is mounted");
    let config_mount = &mounts[&str_of(&config_volume["name"])];
    for (file, body) in config_map["data"].as_mapping().unwrap() {
        std::fs::write(dir.path().join(str_of(file)), str_of(body)).unwrap();
    }

    // The container's environment, with the values Kubernetes would give it.
    let mut plain: BTreeMap<String, String> = BTreeMap::new();
    plain.insert("POD_IP".into(), "10.1.2.3".into());
    let mut env = BTreeMap::new();
    for var in container["env"].as_sequence().unwrap() {
        let name = str_of(&var["name"]);
        let value = if let Some(v) = var.get("value") {
            let mut v = str_of(v);
            for (k, val) in &plain {
                v = v.replace(&format!("$({k})"), val);
            }
            v.replace(config_mount.as_str(), dir.path().to_str().unwrap())
        } else if let Some(r) = var["valueFrom"].get("secretKeyRef") {
            assert_eq!(r["name"], secret["metadata"]["name"]);
            str_of(&secret["stringData"][str_of(&r["key"]).as_str()])
        } else {
            assert!(var["valueFrom"].get("fieldRef").is_some(), "{var:?}");
            continue;
        };
        if name.starts_with("CHATSDK_") {
            env.insert(name, value);
        }
    }
    let args: Vec<String> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(str_of)
        .collect();
    let (ok, out) = config_check(&serve_args(&args), &env);
    assert!(ok, "{out}");
    assert!(out.contains("0.0.0.0:8080"), "{out}");

    // Probes on the health endpoints, on the port the config listens on.
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/live");
    let http_port = container["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "http")
        .unwrap();
    assert_eq!(http_port["containerPort"].as_u64(), Some(8080));
    let toml = str_of(&config_map["data"]["chatsdk.toml"]);
    assert!(toml.contains("http = \"0.0.0.0:8080\""), "{toml}");
    // The data volume is a claim per pod, mounted where the config keeps data.
    let claim = str_of(&set["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]);
    assert_eq!(mounts[&claim], "/data");
    assert!(toml.contains("data_dir = \"/data\""), "{toml}");
    // The join target is pod 0 under the headless Service that publishes unready pods.
    let peers = str_of(&set["spec"]["serviceName"]);
    let headless = by_kind("Service")
        .into_iter()
        .find(|s| s["metadata"]["name"].as_str() == Some(peers.as_str()))
        .expect("the StatefulSet's Service exists");
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], true);
    let set_name = str_of(&set["metadata"]["name"]);
    assert!(
        toml.contains(&format!("join = \"{set_name}-0.{peers}:7400\"")),
        "{toml}"
    );
    assert!(toml.contains(&format!(
        "join_token_url = \"http://{set_name}-0.{peers}:8080\""
    )));
    // A disruption budget that keeps a majority of three.
    let pdb = by_kind("PodDisruptionBudget")[0];
    assert_eq!(pdb["spec"]["minAvailable"].as_u64(), Some(2));
    assert_eq!(set["spec"]["replicas"].as_u64(), Some(3));
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
}

#[test]
fn the_dockerfile_runs_chatsdk_as_a_non_root_user_with_valid_settings() {
    let text = read("deploy/Dockerfile");
    let last_stage = text.rsplit("\nFROM ").next().unwrap();
    assert!(last_stage.contains("distroless"), "{last_stage}");
    let user = last_stage
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "{user}"
    );
    // ENV lines (with continuations) give CHATSDK_ settings.
    let joined = last_stage.replace("\\\n", " ");
    let env: BTreeMap<String, String> = joined
        .lines()
        .filter_map(|l| l.strip_prefix("ENV "))
        .flat_map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    assert!(env.contains_key("CHATSDK_SERVER__DATA_DIR"), "{env:?}");
    let (ok, out) = config_check(&[], &env);
    assert!(ok, "{out}");
    assert!(last_stage.contains("ENTRYPOINT [\"/usr/local/bin/chatsdk\"]"));
}

/// Metric names in the first column of `docs/operations.md`'s table, without labels.
fn documented_metrics() -> BTreeSet<String> {
    let doc = read("docs/operations.md");
    let mut out = BTreeSet::new();
    for line in doc.lines().filter(|l| l.starts_with("| `")) {
        let first = line.split('|').nth(1).unwrap_or_default();
        for name in first.split('`').skip(1).step_by(2) {
            let name = name.split('{').next().unwrap();
            if name.starts_with("chatsdk_") || name.starts_with("process_") {
                out.insert(name.to_string());
            }
        }
    }
    out
}

/// A sample or family name without its type's suffix.
fn family(name: &str) -> String {
    for suffix in ["_bucket", "_count", "_sum", "_total", "_created"] {
        if let Some(base) = name.strip_suffix(suffix) {
            return base.to_string();
        }
    }
    name.to_string()
}

/// Metric names in a text: `chatsdk_...` and `process_...` words.
fn metric_words(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices(['c', 'p']) {
        let rest = &text[i..];
        if !(rest.starts_with("chatsdk_") || rest.starts_with("process_")) {
            continue;
        }
        if i > 0 && text.as_bytes()[i - 1].is_ascii_alphanumeric() {
            continue;
        }
        let word: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        out.insert(word);
    }
    out
}

#[test]
fn the_dashboard_and_the_exposition_name_only_documented_metrics() {
    let documented: BTreeSet<String> = documented_metrics().iter().map(|n| family(n)).collect();
    assert!(documented.len() > 20, "{documented:?}");
    let dashboard = read("deploy/grafana/dashboards/chatsdk.json");
    let dash: serde_yaml::Value = serde_yaml::from_str(&dashboard).unwrap();
    let mut exprs = String::new();
    for panel in dash["panels"].as_sequence().unwrap() {
        for t in panel["targets"].as_sequence().unwrap() {
            exprs.push_str(&str_of(&t["expr"]));
            exprs.push('\n');
        }
    }
    let used: BTreeSet<String> = metric_words(&exprs).iter().map(|n| family(n)).collect();
    assert!(used.len() > 15, "{used:?}");
    let unknown: Vec<_> = used.difference(&documented).collect();
    assert!(
        unknown.is_empty(),
        "dashboard metrics not documented: {unknown:?}"
    );

    // A running node exposes only documented families.
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args(["--http", "127.0.0.1:0", "--cluster-addr", "127.0.0.1:0"])
        .args(["--quic-port", "0"])
        .env("CHATSDK_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Read the banner on a thread that keeps draining it (a closed pipe would end the node).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
                let _ = tx.send(url.to_string());
            }
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the node prints its address");
    let scraped = scrape(&base);
    let _ = child.kill();
    let _ = child.wait();
    let exposed: BTreeSet<String> = scraped
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(family)
        .collect();
    assert!(exposed.len() > 20, "{scraped}");
    let undocumented: Vec<_> = exposed.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "exposed but not in docs/operations.md: {undocumented:?}"
    );
}

/// `GET <base>/metrics` over a plain socket (no client crate needed here).
fn scrape(base: &str) -> String {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Free ports on 127.0.0.1, found by binding port 0 (TCP or UDP) and letting go.
fn free_ports(n: usize, udp: bool) -> Vec<u16> {
    let mut held_tcp = Vec::new();
    let mut held_udp = Vec::new();
    for _ in 0..n {
        if udp {
            held_udp.push(std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
        } else {
            held_tcp.push(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
        }
    }
    held_tcp
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .chain(held_udp.iter().map(|s| s.local_addr().unwrap().port()))
        .collect()
}

/// Stops the script's nodes however the test ends.
struct Stop<'a>(&'a dyn Fn());

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        (self.0)();
    }
}

#[test]
fn the_local_script_starts_the_three_compose_nodes_until_they_report_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let http = free_ports(3, false);
    let cluster = free_ports(3, true);
    let join = |v: &[u16]| v.iter().map(u16::to_string).collect::<Vec<_>>().join(" ");
    let script = repo().join("deploy/local-cluster.sh");
    let run = |what: &str| {
        Command::new("bash")
            .arg(&script)
            .arg(what)
            .env("CHATSDK_BIN", BIN)
            .env("CHATSDK_LOCAL_DIR", dir.path())
            .env("CHATSDK_ADMIN_KEY", SAMPLE_ADMIN_KEY)
            .env("HTTP_PORTS", join(&http))
            .env("CLUSTER_PORTS", join(&cluster))
            .env("WAIT_SECONDS", "120")
            .env_remove("CHATSDK_LOG")
            .output()
            .unwrap()
    };
    let stop = || {
        run("stop");
    };
    let _guard = Stop(&stop);
    let started = Instant::now();
    let out = run("start");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("active"))
        .collect();
    assert_eq!(rows.len(), 3, "{text}");
    for port in &http {
        let addr = format!("127.0.0.1:{port}");
        assert!(rows.iter().any(|r| r.contains(&addr)), "{addr} in {text}");
    }
    eprintln!("three nodes healthy after {:?}", started.elapsed());
    run("stop");
    for i in 1..=3 {
        assert!(
            !dir.path().join(format!("node-{i}/pid")).exists(),
            "node {i} stopped"
        );
    }
}

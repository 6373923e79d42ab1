use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "dmarc-milter.toml")
}

fn repo_file(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn defaults() {
    let config = parse("").unwrap();
    assert_eq!(config.socket, SocketSpec::default());
    assert_eq!(config.socket.to_string(), "inet:127.0.0.1:8895");
    assert_eq!(config.socket_mode, 0o660);
    assert_eq!(config.max_connections, 256);
    assert_eq!(config.shutdown_timeout, Duration::from_secs(30));
    assert_eq!(config.log_level, LogLevel::Info);
    assert_eq!(config.authserv_id, None);
    assert_eq!(config.max_message_size, 64 << 20);
    assert!(!config.remove_all_authentication_results);
    assert_eq!(config.quarantine_action, QuarantineAction::Hold);
    assert_eq!(config.reject_text, DEFAULT_REJECT_TEXT);
    assert_eq!(config.tempfail_text, DEFAULT_TEMPFAIL_TEXT);
    assert!(config.skip_authenticated);
    assert!(config.is_ignored_host("127.0.0.1".parse().unwrap()));
    assert!(config.is_ignored_host("::1".parse().unwrap()));
    assert!(config.is_ignored_host("::ffff:127.0.0.2".parse().unwrap()));
    assert!(!config.is_ignored_host("192.0.2.1".parse().unwrap()));
    assert!(config.ignore_from_domains.is_empty());
    assert!(!config.add_header_to_skipped);
    // The library's defaults, but the trail (the milter never reads it)
    // and a shorter SPF time budget (an answer within Postfix's timeouts).
    let library = VerifierConfig {
        trail: false,
        spf_time_budget: DEFAULT_SPF_TIMEOUT,
        ..VerifierConfig::default()
    };
    assert_eq!(config.verifier, library);
}

#[test]
fn every_key_is_read() {
    let config = parse(
        r#"
socket = "unix:/run/dmarc-milter/milter.sock"
socket_mode = 0o600
max_connections = 10
shutdown_timeout = 2.5
log_level = "debug"
authserv_id = "mx.example.net"
host_name = "mail.example.net"
nameservers = ["192.0.2.53", "[2001:db8::53]:5353"]
dns_timeout = 0.5
dns_attempts = 3
dns_cache_size = 0
dns_max_negative_ttl = 60
spf_timeout = 3.5
discovery = "tree-walk"
shadow_discovery = true
public_suffix_list = "/tmp/psl.dat"
pct = "as-test-mode"
dry_run = true
dmarc_temperror = "accept"
spf_temperror = "accept"
dkim_temperror = "accept"
invalid_from_result = "none"
invalid_from_disposition = "quarantine"
max_author_domains = 2
max_dkim_signatures = 3
allow_rsa_sha1 = true
min_rsa_key_bits = 2048
max_message_size = "10M"
remove_all_authentication_results = true
quarantine_action = "header-only"
reject_text = "no {domain}"
tempfail_text = "later {domain}"
skip_authenticated = false
ignore_hosts = ["192.0.2.0/24", "2001:db8::1"]
ignore_from_domains = ["Example.COM", ".example.org"]
"#,
    )
    .unwrap();
    assert_eq!(
        config.socket,
        SocketSpec::Unix("/run/dmarc-milter/milter.sock".into())
    );
    assert_eq!(config.socket_mode, 0o600);
    assert_eq!(config.max_connections, 10);
    assert_eq!(config.shutdown_timeout, Duration::from_millis(2500));
    assert_eq!(config.log_level, LogLevel::Debug);
    assert_eq!(config.authserv_id.as_deref(), Some("mx.example.net"));
    let v = &config.verifier;
    assert_eq!(v.authserv_id, "mx.example.net");
    assert_eq!(v.host_name.as_deref(), Some("mail.example.net"));
    assert_eq!(
        v.dns.nameservers,
        Nameservers::Explicit(vec![
            "192.0.2.53:53".parse().unwrap(),
            "[2001:db8::53]:5353".parse().unwrap()
        ])
    );
    assert_eq!(v.dns.timeout, Duration::from_millis(500));
    assert_eq!(v.dns.attempts, 3);
    assert_eq!(v.dns.cache_size, 0);
    assert_eq!(v.dns.max_negative_ttl, Duration::from_secs(60));
    assert_eq!(v.spf_time_budget, Duration::from_millis(3500));
    assert_eq!(v.discovery, DiscoveryMethod::TreeWalk);
    assert!(v.shadow_discovery);
    assert_eq!(v.psl_path.as_deref(), Some(Path::new("/tmp/psl.dat")));
    assert_eq!(v.pct, PctMode::AsTestMode);
    assert_eq!(v.pct_draw, None);
    assert_eq!(v.enforcement, Enforcement::Monitor);
    assert_eq!(v.dmarc_temperror, TempErrorAction::Accept);
    assert_eq!(v.spf_temperror, TempErrorAction::Accept);
    assert_eq!(v.dkim_temperror, TempErrorAction::Accept);
    assert_eq!(v.invalid_from_result, InvalidFromResult::None);
    assert_eq!(v.invalid_from_disposition, Disposition::Quarantine);
    assert_eq!(v.max_author_domains, 2);
    assert_eq!(v.max_dkim_signatures, 3);
    assert!(v.allow_rsa_sha1);
    assert_eq!(v.min_rsa_key_bits, 2048);
    assert_eq!(config.max_message_size, 10 << 20);
    assert!(config.remove_all_authentication_results);
    assert_eq!(config.quarantine_action, QuarantineAction::HeaderOnly);
    assert_eq!(config.reject_text, "no {domain}");
    assert_eq!(config.tempfail_text, "later {domain}");
    assert!(!config.skip_authenticated);
    assert!(config.is_ignored_host("192.0.2.77".parse().unwrap()));
    assert!(config.is_ignored_host("2001:db8::1".parse().unwrap()));
    assert!(!config.is_ignored_host("127.0.0.1".parse().unwrap()));
    assert!(config.is_ignored_from(&["example.com".to_string()]));
    assert!(config.is_ignored_from(&["a.b.example.org".to_string()]));
    assert!(!config.is_ignored_from(&["example.org".to_string()]));
    assert!(!config.is_ignored_from(&["sub.example.com".to_string()]));
    assert!(!config.is_ignored_from(&["example.com".to_string(), "evil.example".to_string()]));
}

#[test]
fn errors_name_the_file_line_key_and_value() {
    let cases: &[(&str, &str)] = &[
        (
            "socket = \"inet:127.0.0.1:8895\"\n\n\n\n\n\ninvalid_from_disposition = \"rejekt\"\n",
            "dmarc-milter.toml line 7: invalid value \"rejekt\" for invalid_from_disposition (expected reject, quarantine, accept or tempfail)",
        ),
        (
            "# comment\nsocket_path = \"/x\"\n",
            "dmarc-milter.toml line 2: unknown key \"socket_path\"",
        ),
        (
            "[milter]\nsocket = \"inet:127.0.0.1:1\"\n",
            "dmarc-milter.toml line 1: unknown key \"milter\"",
        ),
        (
            "socket = \"tcp:1.2.3.4\"\n",
            "dmarc-milter.toml line 1: invalid value \"tcp:1.2.3.4\" for socket (expected inet:HOST:PORT or unix:/ABSOLUTE/PATH)",
        ),
        (
            "\nsocket_mode = \"0999\"\n",
            "dmarc-milter.toml line 2: invalid value \"0999\" for socket_mode (expected an octal mode such as \"0660\")",
        ),
        (
            "dry_run = \"yes\"\n",
            "dmarc-milter.toml line 1: invalid value \"yes\" for dry_run (expected true or false)",
        ),
        (
            "dns_timeout = 0\n",
            "dmarc-milter.toml line 1: invalid value \"0\" for dns_timeout (expected a number of seconds above 0, such as 5 or 0.5)",
        ),
        (
            "min_rsa_key_bits = 256\n",
            "dmarc-milter.toml line 1: invalid value \"256\" for min_rsa_key_bits (expected a number of bits from 512 to 8192)",
        ),
        (
            "nameservers = [\"192.0.2.1\", \"dns.example\"]\n",
            "dmarc-milter.toml line 1: invalid value \"dns.example\" for nameservers (expected a list of \"IP\" or \"IP:PORT\" strings)",
        ),
        (
            "ignore_hosts = [\"192.0.2.0/33\"]\n",
            "dmarc-milter.toml line 1: invalid value \"192.0.2.0/33\" for ignore_hosts (expected a list of addresses, networks such as \"192.0.2.0/24\" or host names such as \"mail.example.com\" or \".example.com\")",
        ),
        (
            "ignore_from_domains = [\"exa mple.com\"]\n",
            "dmarc-milter.toml line 1: invalid value \"exa mple.com\" for ignore_from_domains (expected a list of domains such as \"example.com\" or \".example.com\")",
        ),
        (
            "authserv_id = \"mx; dmarc=pass\"\n",
            "dmarc-milter.toml line 1: invalid value \"mx; dmarc=pass\" for authserv_id (expected a host name without spaces or ';')",
        ),
        (
            "authserv_id_aliases = [\"mx2.example.net\", \"mx3 x\"]\n",
            "dmarc-milter.toml line 1: invalid value \"mx3 x\" for authserv_id_aliases (expected a list of host names such as [\"mx2.example.net\"])",
        ),
        (
            "authserv_id_aliases = \"mx2.example.net\"\n",
            "dmarc-milter.toml line 1: invalid value \"mx2.example.net\" for authserv_id_aliases (expected a list of host names such as [\"mx2.example.net\"])",
        ),
        (
            "max_message_size = \"1k\"\n",
            "dmarc-milter.toml line 1: invalid value \"1k\" for max_message_size (expected a size in bytes of at least 64k, such as 67108864 or \"64M\")",
        ),
        (
            "reject_text = \"two\\nlines\"\n",
            "dmarc-milter.toml line 1: invalid value \"two\\nlines\" for reject_text (expected one line of text of at most 700 characters, {domain} for the domain)",
        ),
        (
            "pct = \"half\"\n",
            "dmarc-milter.toml line 1: invalid value \"half\" for pct (expected honor, ignore or as-test-mode)",
        ),
        (
            "socket = \n",
            "dmarc-milter.toml line 1: invalid TOML: invalid string\nexpected `\"`, `'`",
        ),
    ];
    for (text, expected) in cases {
        match parse(text) {
            Ok(_) => panic!("accepted: {text:?}"),
            Err(e) => assert_eq!(e.to_string(), *expected, "{text:?}"),
        }
    }
}

#[test]
fn sizes_and_modes() {
    let size = |s: &str| parse(&format!("max_message_size = {s}")).map(|c| c.max_message_size);
    assert_eq!(size("65536").unwrap(), 65536);
    assert_eq!(size("\"64k\"").unwrap(), 65536);
    assert_eq!(size("\"64 MiB\"").unwrap(), 64 << 20);
    assert_eq!(size("\"1G\"").unwrap(), 1 << 30);
    assert!(size("\"12 parsecs\"").is_err());
    assert!(size("-1").is_err());
    let mode = |s: &str| parse(&format!("socket_mode = {s}")).map(|c| c.socket_mode);
    assert_eq!(mode("\"0660\"").unwrap(), 0o660);
    assert_eq!(mode("\"600\"").unwrap(), 0o600);
    assert_eq!(mode("0o640").unwrap(), 0o640);
    assert!(mode("\"rw-rw----\"").is_err());
}

/// The keys the documented configuration shows, set or commented out:
/// every line `key = value` or `#key = value` before the first table, and
/// each table's name (`[name]` or `[[name]]`); the keys inside a table are
/// its own.
fn documented_keys(sample: &str) -> std::collections::BTreeSet<String> {
    let mut keys = std::collections::BTreeSet::new();
    let mut in_table = false;
    for line in sample.lines() {
        let line = line.strip_prefix('#').unwrap_or(line);
        if let Some(name) = line
            .strip_prefix("[[")
            .and_then(|l| l.strip_suffix("]]"))
            .or_else(|| line.strip_prefix('[').and_then(|l| l.strip_suffix(']')))
        {
            in_table = true;
            keys.insert(name.to_string());
            continue;
        }
        let Some((key, _)) = line.split_once(" = ") else {
            continue;
        };
        if !in_table
            && key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            keys.insert(key.to_string());
        }
    }
    keys
}

/// The documented configuration (the package's conffile, and the source of
/// dmarc-milter.toml(5)) parses, shows exactly the keys the daemon reads,
/// and the README documents each.
#[test]
fn sample_and_readme_document_every_key() {
    let sample = repo_file("dmarc-milter.toml");
    parse(&sample).expect("the sample configuration parses");
    let readme = repo_file("README.md");
    let keys: std::collections::BTreeSet<String> = KEYS.iter().map(|k| k.to_string()).collect();
    assert_eq!(documented_keys(&sample), keys, "dmarc-milter.toml");
    for key in KEYS {
        assert!(
            readme.contains(&format!("`{key}`")),
            "README.md does not document {key}"
        );
    }
}

/// The packaged configuration starts in dry run (issue 14, bug 3); a file
/// without `dry_run` enforces, as the library does.
#[test]
fn packaged_configuration_is_a_dry_run_and_the_default_enforces() {
    let packaged = parse(&repo_file("dmarc-milter.toml")).unwrap();
    assert_eq!(packaged.verifier.enforcement, Enforcement::Monitor);
    assert_eq!(
        parse("").unwrap().verifier.enforcement,
        Enforcement::Enforce
    );
    assert_eq!(VerifierConfig::default().enforcement, Enforcement::Enforce);
    // Apart from dry_run, the packaged file is the defaults.
    let mut without_dry_run = packaged.clone();
    without_dry_run.verifier.enforcement = Enforcement::Enforce;
    assert_eq!(without_dry_run, parse("").unwrap());
}

/// `ignore_hosts` takes addresses, networks (also in Postfix's notation)
/// and host names matched against the client's verified name (issue 14,
/// bug 2).
#[test]
fn ignore_hosts_by_address_network_and_name() {
    let config = parse(
        r#"ignore_hosts = ["192.0.2.0/24", "[2001:db8::]/32", "[::1]", "relay.example.net", ".int.example.net"]"#,
    )
    .unwrap();
    let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
    let cases: &[(Option<IpAddr>, &str, bool)] = &[
        (ip("192.0.2.77"), "unknown", true),
        (ip("2001:db8::25"), "", true),
        (ip("::1"), "localhost", true),
        (ip("::ffff:192.0.2.1"), "unknown", true),
        (ip("198.51.100.1"), "relay.example.net", true),
        (ip("198.51.100.1"), "RELAY.example.net.", true),
        (ip("198.51.100.1"), "a.b.int.example.net", true),
        (ip("198.51.100.1"), "int.example.net", false),
        (ip("198.51.100.1"), "xrelay.example.net", false),
        (ip("198.51.100.1"), "relay.example.net.evil.example", false),
        (ip("198.51.100.1"), "unknown", false),
        (ip("198.51.100.1"), "[198.51.100.1]", false),
        (None, "relay.example.net", true),
        (None, "", false),
        // The loopback default is replaced by the list given.
        (ip("127.0.0.1"), "", false),
    ];
    for &(ip, name, ignored) in cases {
        assert_eq!(config.is_ignored_client(ip, name), ignored, "{ip:?} {name}");
    }
    for bad in [
        "unknown",
        ".unknown",
        "192.0.2.300",
        "mail example.com",
        "[192.0.2.1]x",
        "",
    ] {
        let text = format!("ignore_hosts = [{bad:?}]");
        let error = parse(&text).unwrap_err().to_string();
        assert!(error.contains("for ignore_hosts"), "{bad}: {error}");
    }
}

/// `ignore_hosts_file` adds one entry per line to `ignore_hosts`, and its
/// errors name the file and the line.
#[test]
fn ignore_hosts_file_adds_entries_and_names_its_lines() {
    let dir = std::env::temp_dir().join(format!("dmarc-milter-hosts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ignore-hosts");
    std::fs::write(
        &file,
        "# Postfix mynetworks\n127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128\n",
    )
    .unwrap();
    let text = format!("ignore_hosts_file = \"{}\"\n", file.display());
    let error = parse(&text).unwrap_err().to_string();
    assert_eq!(
        error,
        format!(
            "{} line 2: invalid value \"127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128\" for ignore_hosts_file (expected one address, network such as 192.0.2.0/24 or host name such as mail.example.com or .example.com per line)",
            file.display()
        )
    );

    std::fs::write(
        &file,
        "# Postfix mynetworks, one per line\n\n10.1.0.0/16\n  [2001:db8:1::]/48  # office\nrelay.example.net\n",
    )
    .unwrap();
    let config = parse(&text).unwrap();
    let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
    assert!(config.is_ignored_client(ip("10.1.2.3"), "unknown"));
    assert!(config.is_ignored_client(ip("2001:db8:1::9"), "unknown"));
    assert!(config.is_ignored_client(ip("192.0.2.1"), "relay.example.net"));
    // Added to the default loopback list.
    assert!(config.is_ignored_client(ip("127.0.0.1"), "localhost"));
    assert!(!config.is_ignored_client(ip("10.2.0.1"), "unknown"));

    let missing = format!("ignore_hosts_file = \"{}\"\n", dir.join("nope").display());
    let error = parse(&missing).unwrap_err().to_string();
    assert!(
        error.starts_with(&format!(
            "{}: cannot read the file",
            dir.join("nope").display()
        )),
        "{error}"
    );
    let error = parse("ignore_hosts_file = \"ignore-hosts\"")
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "dmarc-milter.toml line 1: invalid value \"ignore-hosts\" for ignore_hosts_file (expected an absolute file name)"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reporting_settings() {
    assert_eq!(parse("").unwrap().reporting, None);
    let config = parse(
        "report_store = \"/var/lib/dmarc-milter/reports.db\"\n\
         report_org_name = \"Example Net Mail\"\n\
         report_email = \"dmarc-noreply@example.net\"\n\
         report_transport = \"dir:/var/spool/dmarc\"\n\
         report_exclude_domains = [\".example.org\"]\n\
         failure_reports = true\n",
    )
    .unwrap();
    let r = config.reporting.unwrap();
    assert_eq!(
        r.store,
        StoreLocation::Sqlite(PathBuf::from("/var/lib/dmarc-milter/reports.db"))
    );
    assert_eq!(r.reporter.org_name, "Example Net Mail");
    assert_eq!(r.reporter.email, "dmarc-noreply@example.net");
    assert_eq!(r.transport, Transport::Directory("/var/spool/dmarc".into()));
    assert_eq!(r.queue_size, 10_000);
    assert_eq!((r.max_attempts, r.retention_days), (24, 30));
    assert!(r.failure_reports);
    assert_eq!(r.failure_report_content, FailureReportContent::Headers);
    assert!(r.exclude_domains.iter().any(|p| p.matches("a.example.org")));

    let pg = parse(
        "report_store = \"postgresql://dmarc@127.0.0.1/dmarc\"\nreport_org_name = \"x\"\nreport_email = \"a@b.example\"\n",
    )
    .unwrap();
    assert_eq!(
        pg.reporting.unwrap().store,
        StoreLocation::Postgres("postgresql://dmarc@127.0.0.1/dmarc".into())
    );

    let cases: &[(&str, &str)] = &[
        (
            "report_org_name = \"x\"\n",
            "dmarc-milter.toml line 1: report_store is missing; report_org_name needs it",
        ),
        (
            "report_store = \"reports.db\"\n",
            "dmarc-milter.toml line 1: invalid value \"reports.db\" for report_store (expected an absolute SQLite file name or a postgresql:// URL)",
        ),
        (
            "report_store = \"/r.db\"\nreport_email = \"a@b.example\"\n",
            "dmarc-milter.toml line 1: report_org_name is missing; report_store needs it",
        ),
        (
            "report_store = \"/r.db\"\nreport_org_name = \"x\"\nreport_email = \"a@b.example\"\nreport_transport = \"http://x\"\n",
            "dmarc-milter.toml line 4: invalid value \"http://x\" for report_transport (expected smtp:HOST[:PORT] or dir:/PATH)",
        ),
    ];
    for (text, expected) in cases {
        match parse(text) {
            Ok(_) => panic!("accepted: {text:?}"),
            Err(e) => assert_eq!(e.to_string(), *expected, "{text:?}"),
        }
    }
}

/// The packaged units let the service write where the documented
/// configuration puts the report store (issue 14, bug 1: under
/// `ProtectSystem=strict` without `StateDirectory=` the store was
/// read-only and the service stopped).
#[test]
fn packaged_units_give_the_report_store_a_writable_directory() {
    let sample = repo_file("dmarc-milter.toml");
    let store = sample
        .lines()
        .filter_map(|line| line.strip_prefix("#report_store = \""))
        .find(|rest| rest.starts_with('/'))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("the documented SQLite report_store");
    for unit in [
        "debian/dmarc-milter.service",
        "debian/dmarc-milter-report.service",
        "debian/dmarc-milter-failure-report.service",
    ] {
        let text = repo_file(unit);
        let settings: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert!(settings.contains(&"ProtectSystem=strict"), "{unit}");
        assert!(settings.contains(&"User=dmarc-milter"), "{unit}");
        let state = settings
            .iter()
            .find_map(|l| l.strip_prefix("StateDirectory="))
            .unwrap_or_else(|| panic!("{unit} has no StateDirectory="));
        assert!(
            Path::new(store).starts_with(Path::new("/var/lib").join(state)),
            "{unit}: {store} is not in /var/lib/{state}"
        );
    }
    let milter = repo_file("debian/dmarc-milter.service");
    assert!(milter.contains("\nRuntimeDirectory=dmarc-milter\n"));
    assert!(milter.contains("\nSyslogIdentifier=dmarc-milter\n"));
    assert!(milter.contains("\nSyslogFacility=mail\n"));
    assert!(milter.contains("ExecStart=/usr/sbin/dmarc-milter\n"));
}

#[test]
fn authserv_id_aliases_are_lower_case_host_names() {
    let config =
        parse("authserv_id_aliases = [\"MX2.example.net\", \"mx3.example.net\"]\n").unwrap();
    assert_eq!(
        config.authserv_id_aliases,
        ["mx2.example.net", "mx3.example.net"]
    );
    assert!(parse("").unwrap().authserv_id_aliases.is_empty());
}

/// `log_format` and `metrics_listen` (issue 15): off and text by default,
/// read when set, refused with the key and value when wrong.
#[test]
fn observability_keys() {
    let config = parse("").unwrap();
    assert_eq!(config.log_format, LogFormat::Text);
    assert_eq!(config.metrics_listen, None);
    let config = parse("log_format = \"json\"\nmetrics_listen = \"[::1]:9899\"\n").unwrap();
    assert_eq!(config.log_format, LogFormat::Json);
    assert_eq!(config.metrics_listen, Some("[::1]:9899".parse().unwrap()));
    let error = parse("metrics_listen = \"localhost:9899\"\n").unwrap_err();
    assert_eq!(
        error.to_string(),
        "dmarc-milter.toml line 1: invalid value \"localhost:9899\" for metrics_listen (expected an address and port such as \"127.0.0.1:9899\" or \"[::1]:9899\")"
    );
    let error = parse("log_format = \"xml\"\n").unwrap_err();
    assert_eq!(
        error.to_string(),
        "dmarc-milter.toml line 1: invalid value \"xml\" for log_format (expected text or json)"
    );
}

#[test]
fn indirect_flow_keys_are_read() {
    use dmarc_verifier::{OverrideConfig, PolicyOverride, TrustedForwarder};
    // Defaults: the library's.
    let config = parse("").unwrap();
    assert_eq!(config.verifier.overrides, OverrideConfig::default());
    assert_eq!(config.arc_seal, None);

    let config = parse(
        r#"
trusted_arc_sealers = ["Lists.Example.ORG", "google.com"]
arc_override_action = "quarantine"
trusted_forwarders = ["192.0.2.7/24", "2001:db8::1", "dkim:Forwarder.Example.NET"]
trusted_forwarder_action = "quarantine"
mailing_list_action = "off"

[[policy_override]]
from_domain = "Partner.example"
action = "quarantine"

[[policy_override]]
from_domain = "other.example"
action = "accept"

[arc_seal]
domain = "MX.Example.NET"
selector = "arc2026"
key_file = "/etc/dmarc-milter/arc.key"
"#,
    )
    .unwrap();
    let o = &config.verifier.overrides;
    assert_eq!(o.trusted_arc_sealers, ["lists.example.org", "google.com"]);
    assert_eq!(o.arc_override_action, Disposition::Quarantine);
    assert_eq!(
        o.trusted_forwarders,
        [
            TrustedForwarder::Network("192.0.2.0/24".parse().unwrap()),
            TrustedForwarder::Network("2001:db8::1/128".parse().unwrap()),
            TrustedForwarder::DkimDomain("forwarder.example.net".into()),
        ]
    );
    assert_eq!(o.trusted_forwarder_action, Disposition::Quarantine);
    assert_eq!(o.mailing_list_action, None);
    assert_eq!(
        o.policy_overrides,
        [
            PolicyOverride {
                from_domain: "partner.example".into(),
                action: Disposition::Quarantine
            },
            PolicyOverride {
                from_domain: "other.example".into(),
                action: Disposition::Accept
            },
        ]
    );
    assert_eq!(
        config.arc_seal,
        Some(ArcSealConfig {
            domain: "mx.example.net".into(),
            selector: "arc2026".into(),
            key_file: "/etc/dmarc-milter/arc.key".into(),
        })
    );
    for (text, action) in [
        (
            "mailing_list_action = \"accept\"",
            Some(Disposition::Accept),
        ),
        (
            "mailing_list_action = \"quarantine\"",
            Some(Disposition::Quarantine),
        ),
    ] {
        assert_eq!(
            parse(text).unwrap().verifier.overrides.mailing_list_action,
            action
        );
    }
}

#[test]
fn indirect_flow_errors_name_the_line_key_and_value() {
    let cases: &[(&str, &str)] = &[
        (
            "\ntrusted_arc_sealers = [\"lists.example.org\", \"not a domain\"]\n",
            "dmarc-milter.toml line 2: invalid value \"not a domain\" for trusted_arc_sealers (expected a list of domain names such as \"lists.example.org\")",
        ),
        (
            "trusted_arc_sealers = \"lists.example.org\"\n",
            "dmarc-milter.toml line 1: invalid value \"lists.example.org\" for trusted_arc_sealers (expected a list of domain names such as \"lists.example.org\")",
        ),
        (
            "arc_override_action = \"reject\"\n",
            "dmarc-milter.toml line 1: invalid value \"reject\" for arc_override_action (expected accept or quarantine)",
        ),
        (
            "trusted_forwarders = [\"forwarder.example.net\"]\n",
            "dmarc-milter.toml line 1: invalid value \"forwarder.example.net\" for trusted_forwarders (expected a list of \"IP\", \"IP/LEN\" or \"dkim:DOMAIN\" strings)",
        ),
        (
            "mailing_list_action = \"reject\"\n",
            "dmarc-milter.toml line 1: invalid value \"reject\" for mailing_list_action (expected quarantine, accept or off)",
        ),
        (
            "[[policy_override]]\nfrom_domain = \"partner.example\"\naction = \"reject\"\n",
            "dmarc-milter.toml line 1: invalid value \"reject\" for policy_override.action (expected accept or quarantine)",
        ),
        (
            "[[policy_override]]\naction = \"accept\"\n",
            "dmarc-milter.toml line 1: policy_override.from_domain is missing; [policy_override] needs it",
        ),
        (
            "[[policy_override]]\nfrom_domain = \"partner.example\"\naction = \"accept\"\nfrom = \"x\"\n",
            "dmarc-milter.toml line 1: unknown key \"policy_override.from\"",
        ),
        (
            "[[policy_override]]\nfrom_domain = \"a.example\"\naction = \"accept\"\n[[policy_override]]\nfrom_domain = \"A.example\"\naction = \"quarantine\"\n",
            "dmarc-milter.toml line 1: invalid value \"a.example\" for policy_override.from_domain (expected each from_domain once)",
        ),
        (
            "[arc_seal]\ndomain = \"example.net\"\nselector = \"s\"\n",
            "dmarc-milter.toml line 1: arc_seal.key_file is missing; [arc_seal] needs it",
        ),
        (
            "[arc_seal]\ndomain = \"example.net\"\nselector = \"s\"\nkey_file = \"arc.key\"\n",
            "dmarc-milter.toml line 1: invalid value \"arc.key\" for arc_seal.key_file (expected an absolute file name)",
        ),
        (
            "[arc_seal]\ndomain = \"example.net\"\nselector = \"a b\"\nkey_file = \"/k\"\n",
            "dmarc-milter.toml line 1: invalid value \"a b\" for arc_seal.selector (expected a DKIM selector (letters, digits, '-', '_' and dots))",
        ),
        (
            "[arc_seal]\ndomain = \"example.net\"\nselector = \"s\"\nkey_file = \"/k\"\nkey = \"secret\"\n",
            "dmarc-milter.toml line 1: unknown key \"arc_seal.key\"",
        ),
    ];
    for (text, expected) in cases {
        match parse(text) {
            Ok(_) => panic!("accepted: {text:?}"),
            Err(e) => assert_eq!(e.to_string(), *expected, "{text:?}"),
        }
    }
}

//! No server-side request forgery: the reporter's HTTP client reaches loopback and private
//! addresses only for hosts the operator named (report targets, RDAP bootstrap files), never
//! for a host an RDAP server redirects to, however the address is spelled.

mod common;

use std::time::Duration;

use common::*;
use http::Method;
use moat_report::http::{HttpClient, Reach, DEFAULT_MAX_BODY};
use moat_report::rdap::{Bootstrap, Query, RdapClient};
use moat_report::store::Store;
use serde_json::json;

fn client(reach: Reach) -> HttpClient {
    HttpClient::new(Duration::from_secs(5), DEFAULT_MAX_BODY, "Moat/test", reach).unwrap()
}

#[tokio::test]
async fn a_private_address_nobody_named_is_never_connected_to() {
    let inside = FakeHttp::start(|_, _| Resp::json(200, json!({}))).await;
    let port = inside.addr.port();
    let open = client(Reach::public_only());
    for url in [
        format!("http://127.0.0.1:{port}/x"),
        format!("http://[::ffff:127.0.0.1]:{port}/x"),
        format!("http://[::1]:{port}/x"),
        format!("http://10.0.0.1:{port}/x"),
        format!("http://169.254.169.254:{port}/latest/meta-data/"),
        format!("http://0.0.0.0:{port}/x"),
    ] {
        let e = open
            .send(Method::GET, &url, &[], None)
            .await
            .expect_err(&url);
        assert!(
            e.to_string().contains("outside the public internet"),
            "{url}: {e}"
        );
    }
    assert_eq!(inside.count(), 0, "nothing reached the private server");

    // The same server, named by the operator, is reached.
    let named = client(Reach::naming([inside.url().as_str()], []));
    let ans = named
        .send(Method::GET, &format!("{}/ok", inside.url()), &[], None)
        .await
        .unwrap();
    assert_eq!(ans.status, 200);
    assert_eq!(inside.count(), 1);
}

#[test]
fn reach_names_hosts_as_urls_spell_them() {
    let r = Reach::naming(["http://Hooks.Example.:8080/x", "https://[::1]/y"], []);
    let lo: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    assert!(r.allows("hooks.example", lo));
    assert!(r.allows("[::1]", "::1".parse().unwrap()));
    assert!(!r.allows("other.example", lo));
    assert!(r.allows("other.example", "8.8.8.8".parse().unwrap()));
    assert!(
        !r.allows("other.example", "100.64.0.1".parse().unwrap()),
        "CGNAT"
    );
    assert!(
        !r.allows("other.example", "fd00::1".parse().unwrap()),
        "ULA"
    );
    assert!(
        !r.allows("other.example", "fe80::1".parse().unwrap()),
        "link-local"
    );
}

/// An RDAP server the bootstrap names (here on loopback, as the operator set it up) answers
/// with a redirect into the owner's network: the lookup fails, and the redirect's target never
/// sees a request.
#[tokio::test]
async fn an_rdap_redirect_cannot_reach_the_owners_network() {
    let dir = tempfile::tempdir().unwrap();
    let inside =
        FakeHttp::start(|_, _| Resp::json(200, rdap_ip_answer("abuse@inside.example"))).await;
    let port = inside.addr.port();
    let targets = [
        format!("http://[::ffff:127.0.0.1]:{port}/rdap/ip/203.0.113.7"),
        format!("http://localhost:{port}/rdap/ip/203.0.113.7"),
        format!("http://127.1:{port}/rdap/ip/203.0.113.7"),
        format!("http://2130706433:{port}/rdap/ip/203.0.113.7"),
        format!("http://[::1]:{port}/rdap/ip/203.0.113.7"),
    ];
    for (i, target) in targets.iter().enumerate() {
        let to = target.clone();
        let rdap =
            FakeHttp::start(move |_, _| Resp::json(302, json!({})).with_header("location", &to))
                .await;
        let boot = dir.path().join(format!("bootstrap{i}"));
        write_bootstrap(&boot, &format!("{}/rdap/", rdap.url()));
        let bootstrap = Bootstrap::load(Some(&boot)).unwrap();
        let reach = Reach::naming([], bootstrap.hosts());
        let rdap_client = RdapClient::new(bootstrap, client(reach), 60_000, 60_000);
        let store = Store::open(&dir.path().join(format!("r{i}.db"))).unwrap();
        let q = Query::Ip("203.0.113.7".parse().unwrap());
        let got = rdap_client.abuse_contacts(&store, &q, 1_000).await;
        assert!(got.is_err(), "{target}: {got:?}");
        assert_eq!(rdap.count(), 1, "{target}: the named RDAP server was asked");
    }
    assert_eq!(inside.count(), 0, "no redirect reached the private server");
}

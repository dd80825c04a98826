//! The bodies of the `http_head`, `chunked` and `proxy_protocol` fuzz targets
//! (`fuzz/fuzz_targets/`) on stable, so CI runs them without nightly or cargo-fuzz: the
//! committed seeds (checked to be what each target's `seeds()` makes), then mutated seeds and
//! random inputs built from the target's dictionary. Every check is the target's; see
//! `fuzz/stable.rs` for rewriting the seeds.

#[path = "../../../fuzz/fuzz_targets/chunked.rs"]
mod chunked;
#[path = "../../../fuzz/fuzz_targets/http_head.rs"]
mod http_head;
#[path = "../../../fuzz/fuzz_targets/proxy_protocol.rs"]
mod proxy_protocol;
#[path = "../../../fuzz/stable.rs"]
mod stable;

use moat_http::fast::head::Framing;

const DIR: &str = env!("CARGO_MANIFEST_DIR");

/// Runs `run` over the seeds, then `rounds` mutated and random inputs.
fn exercise<T>(target: &str, seeds: &[(String, Vec<u8>)], rounds: usize, run: impl Fn(&[u8]) -> T) {
    let tokens = stable::dict(DIR, target);
    let mut rng = stable::Rng::new(0x6d6f_6174 ^ target.len() as u64);
    for i in 0..rounds {
        let input = if i % 3 == 2 {
            stable::random(&mut rng, &tokens, 24)
        } else {
            {
                let seed = &seeds[rng.below(seeds.len())].1;
                stable::mutate(&mut rng, seed, &tokens)
            }
        };
        stable::reporting(&input, &run);
    }
}

#[test]
fn http_head_seeds_and_garbage() {
    let generated = http_head::seeds();
    let seeds = stable::seeds(DIR, "http_head", &generated);
    let seen = |name: &str| {
        let (_, d) = generated.iter().find(|(n, _)| n.ends_with(name)).unwrap();
        http_head::run(d)
    };
    assert!(seen("-get").eligible && seen("-head-close").eligible && seen("-post-form").eligible);
    for handed in [
        "-post-chunked",
        "-websocket",
        "-http10",
        "-absolute-form",
        "-over-max-head",
    ] {
        let s = seen(handed);
        assert!(!s.eligible && !s.partial, "{handed}: {s:?}");
    }
    assert!(seen("-partial").partial);
    assert_eq!(seen("-resp-length").response, Some(Framing::Length(5)));
    assert_eq!(
        seen("-resp-chunked-and-length").response,
        Some(Framing::Chunked)
    );
    assert_eq!(
        seen("-resp-until-close").response,
        Some(Framing::UntilClose)
    );
    assert_eq!(
        seen("-resp-chunked-gzip").response,
        Some(Framing::UntilClose)
    );
    assert_eq!(seen("-resp-gzip-chunked").response, Some(Framing::Chunked));
    assert_eq!(seen("-resp-head").response, Some(Framing::Empty));
    assert_eq!(seen("-resp-bad-lengths").response, None);
    assert_eq!(
        seen("-resp-connection-names-length").response,
        Some(Framing::Length(5))
    );
    for (_, d) in &seeds {
        http_head::run(d);
    }
    exercise("http_head", &seeds, 100_000, http_head::run);
}

#[test]
fn chunked_seeds_and_garbage() {
    use chunked::Verdict;
    let generated = chunked::seeds();
    let seeds = stable::seeds(DIR, "chunked", &generated);
    for (name, d) in &generated {
        let v = chunked::run(d);
        let want_end = [
            "one-chunk",
            "extensions",
            "trailers",
            "leading-zeros",
            "crlf-in-data",
        ];
        if want_end.iter().any(|w| name.contains(&format!("-{w}"))) {
            let body = d.len() - 1 - 2 * usize::from(d[0] & 7);
            assert_eq!(v, Verdict::End(body), "{name}");
        }
        if name.contains("-bare-lf")
            || name.contains("-sixteen-digits")
            || name.contains("-not-hex")
        {
            assert_eq!(v, Verdict::Bad, "{name}");
        }
        if name.contains("-largest-size") || name.contains("-incomplete-data") {
            assert_eq!(v, Verdict::More, "{name}");
        }
    }
    for (_, d) in &seeds {
        chunked::run(d);
    }
    exercise("chunked", &seeds, 150_000, chunked::run);
}

#[test]
fn proxy_protocol_seeds_and_garbage() {
    use proxy_protocol::Seen;
    let generated = proxy_protocol::seeds();
    let seeds = stable::seeds(DIR, "proxy_protocol", &generated);
    let seen = |name: &str| {
        let (_, d) = generated.iter().find(|(n, _)| n.ends_with(name)).unwrap();
        proxy_protocol::run(d)
    };
    assert_eq!(
        seen("-v1-tcp4"),
        Seen::Header(Some("192.0.2.1:5000".parse().unwrap()))
    );
    assert_eq!(
        seen("-v2-tcp6"),
        Seen::Header(Some("[2001:db8::1]:50000".parse().unwrap()))
    );
    assert_eq!(
        seen("-v2-tlvs"),
        Seen::Header(Some("192.0.2.1:5000".parse().unwrap()))
    );
    for none in ["-v1-unknown", "-v2-local", "-v2-unix", "-v2-unspec"] {
        assert_eq!(seen(none), Seen::Header(None), "{none}");
    }
    for partial in ["-v1-partial", "-v2-partial"] {
        assert_eq!(seen(partial), Seen::Incomplete, "{partial}");
    }
    for bad in [
        "-v1-wrong-family",
        "-v1-bare-lf",
        "-v1-too-long",
        "-v2-bad-tlv",
        "-v2-too-long",
        "-http",
    ] {
        assert_eq!(seen(bad), Seen::Error, "{bad}");
    }
    for (_, d) in &seeds {
        proxy_protocol::run(d);
    }
    exercise("proxy_protocol", &seeds, 100_000, proxy_protocol::run);
}

/// Was a bug (found by the `http_head` target): an upstream response whose `Connection` names
/// `Content-Length` reached the client without its length and without a close, so the client
/// read the next response as part of this body.
#[test]
fn http_head_connection_naming_content_length_keeps_the_framing() {
    let generated = http_head::seeds();
    let (_, d) = generated
        .iter()
        .find(|(n, _)| n.ends_with("-resp-connection-names-length"))
        .unwrap();
    http_head::run(d);
}

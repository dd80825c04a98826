//! The body of the `config` fuzz target (`fuzz/fuzz_targets/config.rs`) on stable, so CI runs
//! it without nightly or cargo-fuzz: the shipped configs and presets, the committed seeds
//! (checked to hold what the target's `seeds()` makes, besides copies of the shipped files),
//! then mutated seeds and random inputs built from its dictionary. Every check is the
//! target's; see `fuzz/stable.rs` for rewriting the seeds.

#[path = "../../../fuzz/fuzz_targets/config.rs"]
mod config;
#[path = "../../../fuzz/stable.rs"]
mod stable;

use config::Seen;

const DIR: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn config_seeds_and_garbage() {
    let root = stable::root(DIR);
    // The files Moat ships load: the example configs as they are, and each preset (a rule
    // file; good-bots.toml is not one) with the one setting a config needs besides.
    let mut shipped = vec![(
        "deploy-moat.toml".to_string(),
        std::fs::read_to_string(root.join("deploy/moat.toml")).unwrap(),
    )];
    for e in std::fs::read_dir(root.join("examples")).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        shipped.push((
            format!("examples-{name}"),
            std::fs::read_to_string(&path).unwrap(),
        ));
    }
    for name in moat_config::presets::NAMES {
        let mut text = moat_config::presets::get(name).unwrap().to_string();
        text.push_str("\n[server]\nupstream = \"http://127.0.0.1:2368\"\n");
        shipped.push((format!("presets-{name}.toml"), text));
    }
    for (name, text) in &shipped {
        if let Err(e) = moat_config::load_text(name, text, &root, &Default::default()) {
            panic!("{e}");
        }
        assert_eq!(config::run(text.as_bytes()), Seen::Loaded, "{name}");
    }
    // Copies of them are seeds too (not checked: they may lag behind the files).
    if std::env::var_os("MOAT_WRITE_FUZZ_SEEDS").is_some() {
        let dir = root.join("fuzz/seeds/config");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in &shipped {
            std::fs::write(dir.join(format!("shipped-{name}")), text).unwrap();
        }
    }

    let generated = config::seeds();
    let seeds = stable::seeds(DIR, "config", &generated);
    let run =
        |name: &str| config::run(&generated.iter().find(|(n, _)| n.contains(name)).unwrap().1);
    assert_eq!(run("-minimal"), Seen::Loaded);
    assert_eq!(run("-empty"), Seen::Errors(1), "no upstream");
    for bad in [
        "-typo-in-table",
        "-bad-values",
        "-bad-rule",
        "-rate-limit",
        "-unknown-preset",
        "-tls-half",
        "-acme-empty",
        "-syntax-error",
        "-duplicate-key",
        "-wrong-types",
        "-multibyte",
        "-crlf",
    ] {
        assert!(matches!(run(bad), Seen::Errors(_)), "{bad}: {:?}", run(bad));
    }
    assert!(
        matches!(run("-typo-in-table"), Seen::Errors(2)),
        "both tables' errors at once"
    );
    // Found by the fuzzer: a lone carriage return was an error without a message.
    assert_eq!(run("-lone-cr"), Seen::Errors(1));
    let e = moat_config::load_text("x.toml", "a = 1\n\r", &root, &Default::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "x.toml:2:1: -: invalid TOML: unexpected '\\r'"
    );
    for (_, d) in &seeds {
        config::run(d);
    }
    let tokens = stable::dict(DIR, "config");
    let mut rng = stable::Rng::new(0x636f_6e66);
    let rounds = if cfg!(debug_assertions) {
        6_000
    } else {
        30_000
    };
    for i in 0..rounds {
        let input = if i % 3 == 2 {
            stable::random(&mut rng, &tokens, 24)
        } else {
            {
                let seed = &seeds[rng.below(seeds.len())].1;
                stable::mutate(&mut rng, seed, &tokens)
            }
        };
        stable::reporting(&input, config::run);
    }
}

//! `moat completions SHELL` (shell completions on stdout) and the hidden `moat man DIR` (man
//! pages), both generated from the clap definition of the command line, so they never drift from
//! it. The Debian package (scripts/build-deb.sh) ships what these two print.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Command, CommandFactory};
use clap_complete::Shell;
use clap_mangen::roff::{bold, italic, roman, Roff};
use clap_mangen::Man;

#[derive(clap::Args)]
#[command(after_help = "Install them where your shell looks:\n  \
    moat completions bash > /usr/share/bash-completion/completions/moat\n  \
    moat completions zsh > /usr/share/zsh/vendor-completions/_moat\n  \
    moat completions fish > ~/.config/fish/completions/moat.fish\n\
    (The Debian package installs all three.)")]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(clap::Args)]
pub struct ManArgs {
    /// Directory the pages are written to (created if missing): moat.1, and moat-SUBCOMMAND.1
    /// for every subcommand (moat-run.1, moat-bans-list.1, …).
    pub dir: PathBuf,
}

/// The command line as users see it: the hidden commands (`man`) left out, so completions never
/// offer them.
fn visible_command() -> Command {
    let full = crate::Cli::command();
    // clap cannot drop a subcommand: a new top level with the same name, version and about.
    let mut cmd = Command::new("moat")
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .subcommands(full.get_subcommands().filter(|c| !c.is_hide_set()).cloned());
    if let Some(about) = full.get_about() {
        cmd = cmd.about(about.clone());
    }
    cmd
}

pub fn completions(a: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = visible_command();
    let mut out = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "moat", &mut out);
    let mut stdout = io::stdout().lock();
    match stdout.write_all(&out).and_then(|()| stdout.flush()) {
        // `moat completions bash | head` is not an error.
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(ExitCode::SUCCESS),
    }
}

pub fn man(a: ManArgs) -> anyhow::Result<ExitCode> {
    fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    let mut cmd = visible_command().disable_help_subcommand(true);
    // Builds the whole tree: every subcommand gets its display name ("moat-bans-list").
    cmd.build();
    let mut pages = Vec::new();
    write_subcommand_pages(&cmd, &a.dir, &mut pages)?;
    let top = a.dir.join("moat.1");
    fs::write(&top, render_top_page(&cmd)?)
        .with_context(|| format!("writing {}", top.display()))?;
    println!("{}", top.display());
    for p in pages {
        println!("{}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The footer names the program and its version on every page, not the subcommand alone.
fn man_page(cmd: &Command) -> Man {
    Man::new(cmd.clone())
        .source(concat!("moat ", env!("CARGO_PKG_VERSION")))
        .manual("Moat Manual")
}

/// One page per subcommand, nested ones included (`moat-rules-test.1`).
fn write_subcommand_pages(
    cmd: &Command,
    dir: &Path,
    pages: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    for sub in cmd.get_subcommands().filter(|c| !c.is_hide_set()) {
        let page = man_page(sub);
        let path = dir.join(page.get_filename());
        let mut see_also = Roff::default();
        see_also.control("SH", ["SEE ALSO"]);
        see_also.text([bold("moat"), roman("(1)")]);
        let text = render_with(&page, &see_also)?;
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        pages.push(path);
        write_subcommand_pages(sub, dir, pages)?;
    }
    Ok(())
}

/// moat(1): what clap_mangen renders, plus FILES (where a packaged install keeps things) and
/// SEE ALSO (the subcommands' pages).
fn render_top_page(cmd: &Command) -> anyhow::Result<String> {
    let mut roff = Roff::default();
    roff.control("SH", ["FILES"]);
    for (path, what) in [
        (
            crate::PACKAGED_CONFIG,
            "The config, read when neither --config nor MOAT_CONFIG names one. \
             `moat check` checks it.",
        ),
        (
            "/var/lib/moat",
            "The state directory: bans, the SQLite database, the admin token (admin.token), \
             ACME certificates, the quarantine.",
        ),
        (
            "/usr/lib/systemd/system/moat.service",
            "The systemd unit: `systemctl enable --now moat` after editing the config; \
             `systemctl reload moat` re-reads it.",
        ),
    ] {
        roff.control("TP", []);
        roff.text([italic(path)]);
        roff.text([roman(what)]);
    }
    roff.control("SH", ["SEE ALSO"]);
    let subs: Vec<String> = cmd
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_display_name().unwrap_or(c.get_name()).to_string())
        .collect();
    let mut refs = Vec::new();
    for (i, name) in subs.iter().enumerate() {
        refs.push(bold(name.as_str()));
        refs.push(roman(if i + 1 == subs.len() { "(1)" } else { "(1), " }));
    }
    roff.text(refs);
    roff.control("PP", []);
    roff.text([roman(
        "The documentation: /usr/share/doc/moat/docs (docs/ in the source): deploy-vm.md, \
         config.md, rules.md, mail.md, trap.md; a mail server's config: \
         /usr/share/doc/moat/examples/postfix-dovecot.toml.",
    )]);
    render_with(&man_page(cmd), &roff)
}

/// The page clap_mangen renders, with `extra` sections before VERSION (or at the end).
fn render_with(page: &Man, extra: &Roff) -> anyhow::Result<String> {
    let mut text = Vec::new();
    page.render(&mut text)?;
    let mut text = String::from_utf8(text)?;
    // to_roff: without the preamble render() already wrote (the text has no apostrophes).
    let at = text.rfind("\n.SH VERSION\n").map_or(text.len(), |i| i + 1);
    text.insert_str(at, &extra.to_roff());
    Ok(text)
}

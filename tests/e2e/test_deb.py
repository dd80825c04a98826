"""Issue 15: the Debian package (scripts/build-deb.sh, `[package.metadata.deb]` in Cargo.toml,
the maintainer scripts in deploy/debian/).

The package is built once per module from the static binary (scripts/build-static.sh: a cold
build takes several minutes), its contents are checked file by file, and then it is installed
into this machine with `dpkg -i` (the tests run as root): the binary, the config and the unit
work as installed, the service user exists, nothing was started. The last tests walk the life
cycle: a local edit of the conffile survives a reinstall, `dpkg -r` keeps the config and the
state (captured mail is never lost by a removal), `dpkg -P` removes everything. Every install is
purged again at teardown, so the machine is left as it was found; a machine that already has a
`moat` package, /usr/bin/moat, /etc/moat or a `moat` user is left alone (those tests skip).

MOAT_DEB=path skips the build and tests that package instead (a CI artifact).
"""

from __future__ import annotations

import gzip
import os
import grp
import pwd
import re
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "scripts" / "build-deb.sh"
VERSION = tomllib.loads((REPO / "Cargo.toml").read_text())["workspace"]["package"]["version"]
CONFIG = Path("/etc/moat/moat.toml")
UNIT = "/usr/lib/systemd/system/moat.service"
COMPLETIONS = {
    "bash": "/usr/share/bash-completion/completions/moat",
    "zsh": "/usr/share/zsh/vendor-completions/_moat",
    "fish": "/usr/share/fish/vendor_completions.d/moat.fish",
}
# Subcommands that get a man page of their own (moat-NAME.1.gz), nested ones included.
MAN_PAGES = ("moat", "moat-run", "moat-check", "moat-bans", "moat-bans-list", "moat-rules-test",
             "moat-doctor-mail", "moat-trap", "moat-quarantine", "moat-reload", "moat-allow",
             "moat-completions")


def run(*args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kw)


@pytest.fixture(scope="module")
def deb() -> Path:
    """The package: built by scripts/build-deb.sh once per module, or MOAT_DEB."""
    given = os.environ.get("MOAT_DEB")
    if given:
        return Path(given)
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is not installed (not a Debian-like system)")
    r = run(str(BUILD), timeout=3600)
    if r.returncode == 3:  # the script's "a tool is missing"
        pytest.skip(f"cannot build the package: {r.stderr.strip().splitlines()[-1]}")
    assert r.returncode == 0, f"build-deb.sh failed ({r.returncode}):\n{r.stderr[-4000:]}"
    path = Path(r.stdout.strip().splitlines()[-1])
    assert path.is_file() and path.name == f"moat_{VERSION}-1_amd64.deb", path
    return path


@pytest.fixture(scope="module")
def unpacked(deb, tmp_path_factory) -> Path:
    """The package's files, extracted with dpkg-deb (no install)."""
    root = tmp_path_factory.mktemp("deb-root")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


def field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True, check=True).stdout.strip()


def test_control_fields(deb):
    assert field(deb, "Package") == "moat"
    assert field(deb, "Version") == f"{VERSION}-1"
    assert field(deb, "Architecture") == "amd64"
    # A static binary needs no libc6; the maintainer scripts need adduser.
    assert field(deb, "Depends") == "adduser"
    assert field(deb, "Section") and field(deb, "Maintainer")
    info = run("dpkg-deb", "-I", str(deb)).stdout
    for script in ("postinst", "postrm", "prerm"):
        assert re.search(rf"^\s+\d+ bytes,\s+\d+ lines\s+\*\s+{script}\b", info, re.M), info
    # /etc/moat/moat.toml is the one conffile: dpkg keeps local edits of it.
    assert run("dpkg-deb", "-I", str(deb), "conffiles").stdout.split() == [str(CONFIG)]


def test_contents_list_every_promised_file(deb):
    listing = run("dpkg-deb", "--contents", str(deb)).stdout
    files = {}
    for line in listing.splitlines():
        parts = line.split()
        files[parts[-1].removeprefix(".")] = parts[0]
    assert files["/usr/bin/moat"] == "-rwxr-xr-x"
    assert files[UNIT] == "-rw-r--r--"
    assert files[str(CONFIG)] == "-rw-r-----", "the config may hold tokens: not world-readable"
    for path in COMPLETIONS.values():
        assert files[path] == "-rw-r--r--", path
    for page in MAN_PAGES:
        assert files[f"/usr/share/man/man1/{page}.1.gz"] == "-rw-r--r--", page
    # Nothing hidden gets a page (`moat man` only writes them), and nothing is uncompressed.
    assert "/usr/share/man/man1/moat-man.1.gz" not in files
    assert not [f for f in files if f.startswith("/usr/share/man/") and f.endswith(".1")]
    assert "/usr/share/doc/moat/copyright" in files
    assert "/usr/share/doc/moat/docs/deploy-vm.md" in files


def test_files_are_the_ones_in_the_source(unpacked):
    assert (unpacked / UNIT.lstrip("/")).read_text() == (REPO / "deploy/moat.service").read_text()
    assert (unpacked / "etc/moat/moat.toml").read_text() == (REPO / "deploy/moat.toml").read_text()
    # The binary is the static one: it runs on any x86_64 Linux, whatever its libc.
    if shutil.which("readelf"):
        headers = run("readelf", "-lW", str(unpacked / "usr/bin/moat")).stdout
        assert "INTERP" not in headers


def test_man_pages_and_completions_come_from_the_binary(unpacked):
    with gzip.open(unpacked / "usr/share/man/man1/moat.1.gz", "rt") as f:
        top = f.read()
    assert "\n.TH moat 1 " in top, top[:200]
    assert ".SH NAME" in top and ".SH FILES" in top and "/etc/moat/moat.toml" in top
    # Every subcommand of the binary has its page, named in moat(1).
    help_text = run(str(unpacked / "usr/bin/moat"), "--help").stdout
    subcommands = re.findall(r"^  (\w+)\s", help_text.split("Commands:")[1].split("Options:")[0], re.M)
    assert "run" in subcommands and "completions" in subcommands
    for name in subcommands:
        if name == "help":
            continue
        assert (unpacked / f"usr/share/man/man1/moat-{name}.1.gz").is_file(), name
        assert f"moat\\-{name}" in top or f"moat-{name}" in top, name
    with gzip.open(unpacked / "usr/share/man/man1/moat-run.1.gz", "rt") as f:
        assert "--upstream" in f.read().replace("\\-", "-")
    zsh = (unpacked / COMPLETIONS["zsh"].lstrip("/")).read_text()
    assert zsh.startswith("#compdef moat")
    fish = (unpacked / COMPLETIONS["fish"].lstrip("/")).read_text()
    assert "complete -c moat" in fish and "check" in fish
    # The hidden `man` command is not offered.
    assert not re.search(r"\bmoat__man\b", (unpacked / COMPLETIONS["bash"].lstrip("/")).read_text())


def _not_ours() -> str | None:
    """Why this machine must not get the package installed and purged by a test, if it must not."""
    if os.geteuid() != 0:
        return "installing a package needs root"
    if shutil.which("dpkg") is None:
        return "dpkg is not installed"
    if run("dpkg-query", "-W", "-f=${Status}", "moat").returncode == 0:
        return "a moat package is already installed here: not replacing (or purging) it"
    for p in ("/usr/bin/moat", "/etc/moat", "/var/lib/moat"):
        if os.path.lexists(p):
            return f"{p} exists already: not ours to overwrite"
    try:
        pwd.getpwnam("moat")
        return "a user named moat exists already"
    except KeyError:
        pass
    return None


def dpkg(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return run("dpkg", *args, env=env, timeout=300)


def purge() -> None:
    """Leave the machine as found: purge whatever the tests installed."""
    if run("dpkg-query", "-W", "-f=${Status}", "moat").returncode == 0:
        r = dpkg("--purge", "moat")
        if r.returncode != 0:
            print("dpkg --purge moat failed:", r.stdout, r.stderr)


@pytest.fixture
def clean_machine(deb):
    why = _not_ours()
    if why:
        pytest.skip(why)
    try:
        yield
    finally:
        purge()


def install(deb: Path, *flags: str) -> subprocess.CompletedProcess:
    r = dpkg(*flags, "-i", str(deb))
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def package_status() -> str:
    return run("dpkg-query", "-W", "-f=${Status}", "moat").stdout


def processes_of(exe: str) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if os.readlink(d / "exe") == exe:
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


@pytest.fixture(scope="class")
def installed(deb):
    """One `dpkg -i` for a test class, purged at its end."""
    why = _not_ours()
    if why:
        pytest.skip(why)
    try:
        yield install(deb)
    finally:
        purge()


@pytest.mark.usefixtures("installed")
class TestInstalled:
    def test_status_and_hint(self, installed):
        assert package_status() == "install ok installed"
        # First install: postinst says what to do next, since nothing was started.
        assert "edit /etc/moat/moat.toml" in installed.stdout + installed.stderr

    def test_version(self):
        r = run("/usr/bin/moat", "--version")
        assert r.returncode == 0 and r.stdout.strip() == f"moat {VERSION}", r.stdout + r.stderr

    def test_the_installed_config_checks(self):
        r = run("/usr/bin/moat", "check", "--config", str(CONFIG))
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.startswith("ok:"), r.stdout
        # Without --config, the packaged config is the one read.
        r = run("/usr/bin/moat", "check", env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        assert r.returncode == 0 and str(CONFIG) in r.stdout, r.stdout + r.stderr

    def test_the_service_user_can_read_the_config_and_others_cannot(self):
        user = pwd.getpwnam("moat")
        assert user.pw_uid < 1000, "a system user"
        assert user.pw_dir == "/var/lib/moat"
        assert user.pw_shell.endswith("nologin") or user.pw_shell == "/bin/false"
        assert grp.getgrgid(user.pw_gid).gr_name == "moat"
        st = CONFIG.stat()
        assert (st.st_uid, grp.getgrgid(st.st_gid).gr_name, stat.S_IMODE(st.st_mode)) == (0, "moat", 0o640)
        if shutil.which("runuser"):
            r = run("runuser", "-u", "moat", "--", "/usr/bin/moat", "check", "--config", str(CONFIG))
            assert r.returncode == 0, r.stdout + r.stderr
            r = run("runuser", "-u", "nobody", "--", "/usr/bin/moat", "check", "--config", str(CONFIG))
            assert r.returncode != 0

    def test_man_page(self):
        page = Path("/usr/share/man/man1/moat.1.gz")
        if not page.exists() and any("path-exclude" in p.read_text() and "/usr/share/man" in p.read_text()
                                     for p in Path("/etc/dpkg/dpkg.cfg.d").glob("*")):
            pytest.skip("dpkg is configured not to install man pages here (path-exclude)")
        with gzip.open(page, "rt") as f:
            text = f.read()
        assert ".SH NAME" in text and "moat" in text
        if shutil.which("man"):
            r = run("man", "-P", "cat", "moat", env=dict(os.environ, MANWIDTH="100"))
            assert r.returncode == 0 and "NAME" in r.stdout and "moat-check(1)" in r.stdout, r.stdout + r.stderr

    def test_bash_completion_completes_subcommands(self):
        if shutil.which("bash") is None:
            pytest.skip("bash is not installed")
        script = (f"source {COMPLETIONS['bash']}; COMP_WORDS=(moat ch); COMP_CWORD=1; "
                  'COMP_LINE="moat ch"; COMP_POINT=7; _moat moat ch moat; echo "${COMPREPLY[@]}"')
        r = run("bash", "-c", script)
        assert r.returncode == 0 and r.stdout.split() == ["check"], r.stdout + r.stderr
        script = (f"source {COMPLETIONS['bash']}; COMP_WORDS=(moat bans ''); COMP_CWORD=2; "
                  "_moat moat '' bans; echo \"${COMPREPLY[@]}\"")
        r = run("bash", "-c", script)
        assert {"list", "add", "rm"} <= set(r.stdout.split()), r.stdout + r.stderr
        # Where bash-completion looks it up by the command's name, it finds it.
        loader = Path("/usr/share/bash-completion/bash_completion")
        if loader.exists():
            r = run("bash", "-c", f"source {loader}; __load_completion moat; complete -p moat")
            assert "_moat" in r.stdout, r.stdout + r.stderr

    def test_zsh_and_fish_load_the_completions(self):
        if shutil.which("zsh") is None and shutil.which("fish") is None:
            pytest.skip("neither zsh nor fish is installed (their files are checked above)")
        if shutil.which("zsh"):
            r = run("zsh", "-n", COMPLETIONS["zsh"])
            assert r.returncode == 0, r.stdout + r.stderr
        if shutil.which("fish"):
            r = run("fish", "-c", "complete -C 'moat ch'")
            assert "check" in r.stdout, r.stdout + r.stderr

    def test_the_unit_verifies(self):
        assert Path("/lib/systemd/system/moat.service").exists() or Path(UNIT).exists()
        if shutil.which("systemd-analyze") is None:
            pytest.skip("systemd-analyze is not installed")
        # The man page the unit's Documentation= names is installed, so it is checked too.
        man = [] if Path("/usr/share/man/man1/moat.1.gz").exists() and shutil.which("man") else ["--man=no"]
        r = run("systemd-analyze", "verify", *man, UNIT, timeout=60)
        assert r.returncode == 0 and "error" not in r.stderr.lower(), r.stdout + r.stderr

    def test_the_service_was_neither_enabled_nor_started(self):
        assert not processes_of("/usr/bin/moat")
        assert not Path("/etc/systemd/system/multi-user.target.wants/moat.service").exists()
        r = run("deb-systemd-helper", "--quiet", "was-enabled", "moat.service")
        assert r.returncode != 0, "enabled at install"
        if Path("/run/systemd/system").is_dir():  # systemd is the init here
            r = run("systemctl", "is-active", "moat.service")
            assert r.stdout.strip() in ("inactive", "unknown"), r.stdout
        # Nothing ran as the service: systemd creates the state directory at the first start.
        assert not Path("/var/lib/moat").exists()


def test_local_edits_survive_a_reinstall(deb, clean_machine):
    install(deb)
    edited = CONFIG.read_text().replace('listen = ["127.0.0.1:8080"]', 'listen = ["127.0.0.1:8181"]')
    assert "127.0.0.1:8181" in edited
    CONFIG.write_text(edited)
    install(deb, "--force-confold")
    assert CONFIG.read_text() == edited
    st = CONFIG.stat()
    assert grp.getgrgid(st.st_gid).gr_name == "moat" and stat.S_IMODE(st.st_mode) == 0o640
    r = run("/usr/bin/moat", "check", "--config", str(CONFIG))
    assert r.returncode == 0 and "127.0.0.1:8181" in r.stdout, r.stdout + r.stderr


def test_remove_keeps_config_and_state_and_purge_removes_them(deb, clean_machine):
    install(deb)
    CONFIG.write_text(CONFIG.read_text() + "# a local note\n")
    # What the service would have written: a captured message in the quarantine.
    capture = Path("/var/lib/moat/quarantine/capture.eml")
    capture.parent.mkdir(parents=True)
    capture.write_text("Subject: kept\n\nbody\n")

    r = dpkg("--remove", "moat")
    assert r.returncode == 0, r.stdout + r.stderr
    assert package_status() == "deinstall ok config-files"
    assert not Path("/usr/bin/moat").exists() and not Path(UNIT).exists()
    assert CONFIG.read_text().endswith("# a local note\n"), "the conffile is kept on remove"
    assert capture.read_text() == "Subject: kept\n\nbody\n", "captured mail is never lost on remove"
    pwd.getpwnam("moat")

    r = dpkg("--purge", "moat")
    assert r.returncode == 0, r.stdout + r.stderr
    assert run("dpkg-query", "-W", "-f=${Status}", "moat").returncode != 0
    assert not CONFIG.exists() and not Path("/etc/moat").exists()
    assert not Path("/var/lib/moat").exists()
    with pytest.raises(KeyError):
        pwd.getpwnam("moat")
    with pytest.raises(KeyError):
        grp.getgrnam("moat")
    assert not Path("/etc/systemd/system/moat.service").exists(), "no mask left behind"

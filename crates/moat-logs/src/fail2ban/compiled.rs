//! A filter's compiled regexes, shared by every copy of the filter, and each copy's own
//! capture slots.
//!
//! Split so that a copy is cheap: Moat makes one per jail while it builds its jails, and one
//! per log and filter for the jails that read it. The compiled regexes (the JIT code is the
//! bulk of a filter's memory) are behind one `Arc`; a copy's capture slots are made at each
//! regex's first match, so a copy that is never used costs none of PCRE2's match data.

use super::matcher::Groups;
use super::tags::resolve_regex_tags;
use pcre2::bytes::{CaptureLocations, Regex, RegexBuilder};

/// One regex, compiled from fail2ban's syntax (its `<tag>`s expanded).
pub(super) struct Compiled {
    regex: Regex,
    pub(super) names: Vec<Option<String>>,
    /// The `<F-CONTENT>` group's index (a `prefregex` hands it to the `failregex`es).
    pub(super) content: Option<usize>,
}

impl Compiled {
    /// `multi_line`: for a filter with `maxlines` > 1, `^` and `$` match at every line of
    /// the buffer (Python's `re.MULTILINE`, which fail2ban sets then).
    pub(super) fn new(source: &str, what: &str, multi_line: bool) -> Result<Self, String> {
        let expanded = resolve_regex_tags(source);
        let regex = build(&expanded, multi_line).map_err(|e| format!("{what} `{source}`: {e}"))?;
        let names = regex.capture_names().to_vec();
        let content = names.iter().position(|n| n.as_deref() == Some("content"));
        Ok(Compiled {
            regex,
            names,
            content,
        })
    }
}

/// PCRE2 with JIT, matching bytes: lines are UTF-8 already, and PCRE2's UTF mode checks
/// each subject's encoding again (a fifth of the time on a mostly quiet log). Patterns and
/// logs are ASCII where it matters (addresses, keywords); outside ASCII, `.` and classes
/// step over bytes rather than characters, and a capture is read back lossily.
fn build(pattern: &str, multi_line: bool) -> Result<Regex, pcre2::Error> {
    RegexBuilder::new()
        .jit_if_available(true)
        .multi_line(multi_line)
        .build(pattern)
}

/// A filter's regexes. Slot numbers (for [`Slots`]): the `prefregex` is 0, the `failregex`es
/// follow from 1, then the `ignoreregex`es from [`Regexes::ignore_slot`].
pub(super) struct Regexes {
    pub(super) prefregex: Option<Compiled>,
    pub(super) failregex: Vec<Compiled>,
    pub(super) ignoreregex: Vec<Compiled>,
}

impl Regexes {
    pub(super) fn ignore_slot(&self) -> usize {
        1 + self.failregex.len()
    }
}

/// One copy's capture slots, reused between lines: a match then allocates nothing.
#[derive(Default)]
pub(super) struct Slots(Vec<Option<CaptureLocations>>);

impl Slots {
    /// Whether `c`, in slot `i`, matches `buf`; its groups are then read with
    /// [`Slots::span`] and [`Slots::groups`].
    pub(super) fn read(&mut self, i: usize, c: &Compiled, buf: &str) -> bool {
        if self.0.len() <= i {
            self.0.resize_with(i + 1, || None);
        }
        let locs = self.0[i].get_or_insert_with(|| c.regex.capture_locations());
        matches!(c.regex.captures_read(locs, buf.as_bytes()), Ok(Some(_)))
    }

    /// Where group `group` of slot `i` matched in the last subject it matched.
    pub(super) fn span(&self, i: usize, group: usize) -> Option<(usize, usize)> {
        self.0.get(i)?.as_ref()?.get(group)
    }

    /// The named groups of `c` (in slot `i`) that matched in `buf`, the subject it last
    /// matched, but `skip`.
    pub(super) fn groups(&self, i: usize, c: &Compiled, buf: &str, skip: Option<usize>) -> Groups {
        let mut groups = Groups::new();
        for (g, name) in c.names.iter().enumerate() {
            if let (Some(name), Some((s, e)), false) = (name, self.span(i, g), skip == Some(g)) {
                let value = String::from_utf8_lossy(&buf.as_bytes()[s..e]).into_owned();
                groups.insert(name.clone(), value);
            }
        }
        groups
    }
}

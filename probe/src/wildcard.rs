//! Wildcard patterns in config: `*` matches any run of characters, `?` exactly one,
//! everything else itself. Used for `include` globs in ld.so.conf and for service
//! patterns in alerting routes and silences (names there are ASCII).

/// `*` matches any run of bytes, `?` one byte; everything else matches itself.
pub fn matches(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                backtrack = Some((p, n));
                p += 1;
            }
            Some(c) if *c == b'?' || *c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match backtrack {
                Some((star, matched)) => {
                    p = star + 1;
                    n = matched + 1;
                    backtrack = Some((star, matched + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == b'*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn stars_and_question_marks_match_as_in_a_shell() {
        assert!(matches(b"butler-*", b"butler-tax"));
        assert!(matches(b"*.conf", b"x86_64-linux-gnu.conf"));
        assert!(matches(b"lib?.so", b"liba.so"));
        assert!(!matches(b"butler-*", b"recall-api"));
        assert!(!matches(b"lib?.so", b"libab.so"));
    }
}

//! Short-option parsing with the rules of the stock programs: glibc
//! `getopt(3)` for the C programs (options may follow operands, `-abc`
//! groups flags, `-cVALUE` and `-c VALUE` both give a value, `--` ends the
//! options) and bash `getopts` for the shell scripts (parsing stops at the
//! first operand).

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// One parsed option, in command-line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opt {
    /// A known option, with its value if it takes one.
    Known(char, Option<OsString>),
    /// An option letter not in the specification.
    Unknown(char),
    /// An option that needs a value, at the end of the command line.
    MissingValue(char),
}

/// How operands (non-option arguments) are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// glibc: operands are set aside and parsing goes on.
    Permute,
    /// POSIX / bash getopts: the first operand ends the options.
    StopAtOperand,
}

/// Parses `args` (without `argv[0]`) against `spec` (`"Hhlsvc:p:"`: a
/// letter followed by `:` takes a value). Returns the options in order and
/// the operands.
pub fn parse(args: &[OsString], spec: &str, style: Style) -> (Vec<Opt>, Vec<OsString>) {
    let mut opts = Vec::new();
    let mut operands = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_bytes();
        i += 1;
        if arg == b"--" {
            operands.extend(args[i..].iter().cloned());
            break;
        }
        if arg.len() < 2 || arg[0] != b'-' {
            operands.push(OsString::from_vec(arg.to_vec()));
            if style == Style::StopAtOperand {
                operands.extend(args[i..].iter().cloned());
                break;
            }
            continue;
        }
        let mut j = 1;
        while j < arg.len() {
            let c = char::from(arg[j]);
            j += 1;
            match takes_value(spec, c) {
                None => opts.push(Opt::Unknown(c)),
                Some(false) => opts.push(Opt::Known(c, None)),
                Some(true) => {
                    if j < arg.len() {
                        opts.push(Opt::Known(c, Some(OsString::from_vec(arg[j..].to_vec()))));
                    } else if i < args.len() {
                        opts.push(Opt::Known(c, Some(args[i].clone())));
                        i += 1;
                    } else {
                        opts.push(Opt::MissingValue(c));
                    }
                    break;
                }
            }
        }
    }
    (opts, operands)
}

/// `Some(true)` if `c` takes a value, `Some(false)` if it is a flag, `None`
/// if it is not in `spec`.
fn takes_value(spec: &str, c: char) -> Option<bool> {
    if c == ':' {
        return None;
    }
    let pos = spec.find(c)?;
    Some(spec[pos + c.len_utf8()..].starts_with(':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn known(c: char, v: Option<&str>) -> Opt {
        Opt::Known(c, v.map(OsString::from))
    }

    #[test]
    fn groups_values_and_permutation_as_glibc() {
        let (opts, rest) = parse(
            &os(&["-lv", "x", "-cweb", "-p", "/s", "--", "-s"]),
            "Hhlsvc:p:",
            Style::Permute,
        );
        assert_eq!(
            opts,
            vec![
                known('l', None),
                known('v', None),
                known('c', Some("web")),
                known('p', Some("/s")),
            ]
        );
        assert_eq!(rest, os(&["x", "-s"]));
    }

    #[test]
    fn unknown_and_missing_values_are_reported() {
        let (opts, _) = parse(&os(&["-x", "-c"]), "Hhlsvc:p:", Style::Permute);
        assert_eq!(opts, vec![Opt::Unknown('x'), Opt::MissingValue('c')]);
        let (opts, _) = parse(&os(&["-:"]), "c:", Style::Permute);
        assert_eq!(opts, vec![Opt::Unknown(':')]);
    }

    #[test]
    fn getopts_style_stops_at_the_first_operand() {
        let (opts, rest) = parse(&os(&["-i", "file", "-s"]), "Ghisc:n:", Style::StopAtOperand);
        assert_eq!(opts, vec![known('i', None)]);
        assert_eq!(rest, os(&["file", "-s"]));
        let (opts, rest) = parse(&os(&["-", "-i"]), "i", Style::StopAtOperand);
        assert!(opts.is_empty());
        assert_eq!(rest, os(&["-", "-i"]));
    }
}

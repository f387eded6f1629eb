//! Reading secrets (passphrases, the recovery phrase) without dependencies.
//!
//! From an environment variable when it is set; else, when standard input is a terminal, from
//! `/dev/tty` with echo turned off by `stty -echo` (and back on by `stty echo`); else one line
//! from standard input. Prompts go to the terminal (or standard error), never to standard output.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::process::{Command, Stdio};

use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// The passphrase variable.
pub const PASSPHRASE_ENV: &str = "CONSENT_PASSPHRASE";
/// The recovery-phrase variable.
pub const RECOVERY_PHRASE_ENV: &str = "CONSENT_RECOVERY_PHRASE";

/// The value of `var` when set (even empty), else `None`.
pub fn from_env(var: &str) -> Option<Zeroizing<String>> {
    std::env::var(var).ok().map(Zeroizing::new)
}

/// Whether standard input is a terminal (interactive use).
pub fn interactive() -> bool {
    std::io::stdin().is_terminal()
}

/// Reads one secret line after showing `prompt`; see the module docs for where it comes from.
///
/// # Errors
/// [`Error::Io`] when neither the terminal nor standard input can be read.
pub fn read_secret(prompt: &str) -> Result<Zeroizing<String>> {
    if interactive() {
        if let Ok(tty) = OpenOptions::new().read(true).write(true).open("/dev/tty") {
            return read_from_tty(tty, prompt);
        }
    }
    eprint!("{prompt}");
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::io("reading standard input", e))?;
    if interactive() {
        eprintln!();
    }
    Ok(trim_line(line))
}

fn stty(arg: &str) -> bool {
    let Ok(tty) = File::open("/dev/tty") else {
        return false;
    };
    Command::new("stty")
        .arg(arg)
        .stdin(Stdio::from(tty))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn read_from_tty(mut tty: File, prompt: &str) -> Result<Zeroizing<String>> {
    tty.write_all(prompt.as_bytes())
        .and_then(|()| tty.flush())
        .map_err(|e| Error::io("writing to /dev/tty", e))?;
    let echo_off = stty("-echo");
    let mut line = Zeroizing::new(String::new());
    let read = BufReader::new(&tty).read_line(&mut line);
    if echo_off {
        stty("echo");
        let _ = tty.write_all(b"\n");
    }
    read.map_err(|e| Error::io("reading /dev/tty", e))?;
    Ok(trim_line(line))
}

fn trim_line(line: Zeroizing<String>) -> Zeroizing<String> {
    let t = line.trim_end_matches(['\r', '\n']);
    Zeroizing::new(t.to_owned())
}

/// Asks for confirmation on the terminal (only when interactive): shows `prompt` and waits for
/// Enter.
pub fn wait_for_enter(prompt: &str) {
    // Only when someone can both see what was shown (on stderr) and answer.
    if !interactive() || !std::io::stderr().is_terminal() {
        return;
    }
    if let Ok(mut tty) = OpenOptions::new().read(true).write(true).open("/dev/tty") {
        let _ = tty.write_all(prompt.as_bytes());
        let mut line = String::new();
        let _ = BufReader::new(&tty).read_line(&mut line);
    }
}

//! What the `gidd serve` tests share: a server child on a free port and a client.

#![allow(dead_code, clippy::unwrap_used)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

/// A `gidd serve` child on a free port, killed when dropped (also when a test fails).
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        Self::start_logging(extra, Stdio::inherit())
    }

    pub fn start_logging(extra: &[&str], stderr: Stdio) -> Server {
        let mut child = gidd_tests::gidd()
            .args(["serve", "--port", "0", "--checkpoint"])
            .arg(gidd_tests::golden_case("mask-small"))
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("gidd serve printed {line:?}, not its address"))
            .to_string();
        Server { child, base }
    }

    pub fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(60)))
            .build()
            .into()
    }

    /// (status, body text)
    pub fn post_raw(&self, path: &str, body: &str) -> (u16, String) {
        let mut r = Self::agent()
            .post(format!("{}{path}", self.base))
            .content_type("application/json")
            .send(body)
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let (s, text) = self.post_raw(path, &body.to_string());
        (s, serde_json::from_str(&text).unwrap())
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        let mut r = Self::agent()
            .get(format!("{}{path}", self.base))
            .call()
            .unwrap();
        let text = r.body_mut().read_to_string().unwrap();
        (r.status().as_u16(), serde_json::from_str(&text).unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

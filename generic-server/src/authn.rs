//! Authentication: who is calling. x509 client certificates (verified by rustls
//! against the client CA during the handshake; here we read CN and O), bearer
//! tokens from a static token file, and anonymous access.

use std::collections::HashMap;
use std::path::Path;

/// The authenticated caller, put into request extensions by the filter chain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: HashMap<String, Vec<String>>,
}

impl UserInfo {
    pub fn anonymous() -> Self {
        UserInfo {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
            ..Default::default()
        }
    }
}

/// The subject of a verified client certificate (DER): CN is the user, each O a group.
pub fn user_from_certificate(der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let mut groups: Vec<String> =
        subject.iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string)).collect();
    groups.push("system:authenticated".into());
    Some(UserInfo { name, groups, ..Default::default() })
}

/// `--token-auth-file`: CSV lines `token,user,uid[,"group1,group2"]`.
#[derive(Debug, Default, Clone)]
pub struct TokenFile {
    tokens: HashMap<String, UserInfo>,
}

impl TokenFile {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let mut tokens = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields = split_csv(line);
            if fields.len() < 3 {
                return Err(format!("token file line {}: want at least 3 columns, got {}", n + 1, fields.len()));
            }
            let mut groups: Vec<String> = fields
                .get(3)
                .map(|g| g.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
                .unwrap_or_default();
            groups.push("system:authenticated".into());
            tokens.insert(
                fields[0].clone(),
                UserInfo { name: fields[1].clone(), uid: fields[2].clone(), groups, extra: HashMap::new() },
            );
        }
        Ok(TokenFile { tokens })
    }

    pub fn authenticate(&self, token: &str) -> Option<UserInfo> {
        self.tokens.get(token).cloned()
    }
}

/// One CSV record with double-quoted fields.
fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file() {
        let f = TokenFile::parse("abc,alice,1,\"dev,ops\"\n\ndef,bob,2\n").unwrap();
        let a = f.authenticate("abc").unwrap();
        assert_eq!(a.name, "alice");
        assert_eq!(a.groups, vec!["dev", "ops", "system:authenticated"]);
        assert_eq!(f.authenticate("def").unwrap().groups, vec!["system:authenticated"]);
        assert!(f.authenticate("nope").is_none());
        assert!(TokenFile::parse("only,two").is_err());
    }
}

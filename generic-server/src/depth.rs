//! How deeply a JSON or YAML request body may nest, checked in one pass over
//! its bytes before a parser sees it.
//!
//! Upstream's decoders refuse documents nested deeper than 10000 levels (Go's
//! encoding/json and go-yaml). This server works on documents recursively and
//! its parsers stop at serde's recursion limit, so the limit here is that one;
//! the check exists because libyaml spends time proportional to the body
//! times its flow nesting before the recursion limit is reached (100,000
//! nested `[` cost seconds), so an over-deep body must never reach it.
//!
//! The YAML scan counts flow collections (`[`, `{`) only where one can begin,
//! skipping quoted scalars, comments and block scalars. Where it is unsure it
//! counts too little, never too much: a document it passes is still bounded
//! by the parser's own limit, and it refuses only what the parser would.

/// The deepest nesting a body may have: serde_json's recursion limit of 128
/// counts the document itself, so 127 nested collections are the most it reads.
pub const MAX_DEPTH: usize = 127;

/// Refuses a JSON document nested deeper than [`MAX_DEPTH`] with Go's
/// encoding/json message. Malformed JSON passes: the parser reports it.
pub fn check_json(body: &[u8]) -> Result<(), String> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'"' => i = skip_double_quoted(body, i),
            c @ (b'[' | b'{') => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(format!("invalid character '{}' exceeded max depth", c as char));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// Refuses a YAML document whose flow collections nest deeper than
/// [`MAX_DEPTH`] with go-yaml's message (its line numbering included).
pub fn check_yaml(body: &[u8]) -> Result<(), String> {
    let mut depth = 0usize;
    // Where the next byte stands: may a node (a flow collection or a quoted scalar) begin here?
    let mut node_start = true;
    let mut line = 0usize;
    let mut line_indent = 0usize;
    let mut at_line_start = true;
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        if at_line_start {
            if c == b' ' {
                line_indent += 1;
                i += 1;
                continue;
            }
            at_line_start = false;
        }
        match c {
            b'\n' => {
                line += 1;
                line_indent = 0;
                at_line_start = true;
                node_start = true;
            }
            b'#' if i == 0 || matches!(body[i - 1], b' ' | b'\t' | b'\n' | b'\r') => {
                while i + 1 < body.len() && body[i + 1] != b'\n' {
                    i += 1;
                }
            }
            b'"' | b'\'' if node_start => {
                let end = if c == b'"' { skip_double_quoted(body, i) } else { skip_single_quoted(body, i) };
                line += body[i..end.min(body.len())].iter().filter(|b| **b == b'\n').count();
                i = end;
                node_start = false;
            }
            b'[' | b'{' if node_start || depth > 0 => {
                depth += 1;
                if depth > MAX_DEPTH {
                    let at = if line == 0 { String::new() } else { format!("line {}: ", line + 1) };
                    return Err(format!("yaml: {at}exceeded max depth of {MAX_DEPTH}"));
                }
                node_start = true;
            }
            b']' | b'}' if depth > 0 => {
                depth -= 1;
                node_start = false;
            }
            b',' if depth > 0 => node_start = true,
            // A mapping value, a sequence entry or a complex key: a node may follow.
            b':' | b'-' | b'?' if followed_by_blank(body, i) || (c == b':' && depth > 0) => node_start = true,
            b'|' | b'>' if node_start && depth == 0 => {
                // A block scalar: its lines are more indented than this one's, and literal.
                i = skip_block_scalar(body, i, line_indent, &mut line);
                line_indent = 0;
                at_line_start = true;
                node_start = true;
                continue;
            }
            b' ' | b'\t' | b'\r' => {}
            _ => node_start = false,
        }
        i += 1;
    }
    Ok(())
}

fn followed_by_blank(body: &[u8], i: usize) -> bool {
    body.get(i + 1).is_none_or(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

/// The index of the closing quote of the double-quoted string opening at `start`
/// (or the end of the body).
fn skip_double_quoted(body: &[u8], start: usize) -> usize {
    // Strings are most of a body's bytes: the search jumps to the next
    // quote or backslash rather than stepping through each.
    let mut i = start + 1;
    while let Some(at) = body.get(i..).and_then(|rest| memchr::memchr2(b'\\', b'"', rest)) {
        i += at;
        if body[i] == b'"' {
            return i;
        }
        i += 2;
    }
    body.len()
}

/// As [`skip_double_quoted`] for YAML's single quotes, where `''` is a quote.
fn skip_single_quoted(body: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < body.len() {
        if body[i] == b'\'' {
            if body.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            return i;
        }
        i += 1;
    }
    body.len()
}

/// Skips the block scalar whose indicator is at `start` on a line indented
/// `indent`: the rest of that line, then every blank line or line indented
/// more. Returns the index of the first line after it, counting lines.
fn skip_block_scalar(body: &[u8], start: usize, indent: usize, line: &mut usize) -> usize {
    let mut i = start;
    while i < body.len() && body[i] != b'\n' {
        i += 1;
    }
    while i < body.len() {
        // `i` is at a newline; look at the next line.
        let next = i + 1;
        let mut j = next;
        while j < body.len() && body[j] == b' ' {
            j += 1;
        }
        let blank = j >= body.len() || matches!(body[j], b'\n' | b'\r');
        if !blank && j - next <= indent {
            *line += 1;
            return next;
        }
        *line += 1;
        i = j;
        while i < body.len() && body[i] != b'\n' {
            i += 1;
        }
    }
    body.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(open: &str, close: &str, n: usize) -> String {
        format!("{}{}", open.repeat(n), close.repeat(n))
    }

    #[test]
    fn json_depth_is_serde_jsons_limit() {
        let ok = nested("[", "]", MAX_DEPTH);
        assert!(check_json(ok.as_bytes()).is_ok());
        assert!(serde_json::from_str::<serde_json::Value>(&ok).is_ok(), "serde_json reads what the check passes");
        let deep = nested("[", "]", MAX_DEPTH + 1);
        assert_eq!(check_json(deep.as_bytes()), Err("invalid character '[' exceeded max depth".into()));
        assert!(serde_json::from_str::<serde_json::Value>(&deep).is_err(), "and refuses what it refuses");
        let objects = format!("{}1{}", "{\"a\":".repeat(MAX_DEPTH + 1), "}".repeat(MAX_DEPTH + 1));
        assert_eq!(check_json(objects.as_bytes()), Err("invalid character '{' exceeded max depth".into()));
        // Brackets inside strings are text.
        let text = format!("{{\"a\":\"{}\\\"{}\"}}", "[".repeat(500), "{".repeat(500));
        assert!(check_json(text.as_bytes()).is_ok());
        // A string that ends in an escaped backslash ends there: what follows counts.
        let after = format!("[\"a\\\\\",{}]", nested("[", "]", MAX_DEPTH));
        assert_eq!(check_json(after.as_bytes()), Err("invalid character '[' exceeded max depth".into()));
    }

    #[test]
    fn yaml_flow_depth_is_refused_with_go_yamls_message() {
        let deep = format!("a: {}", nested("[", "]", 100_000));
        assert_eq!(check_yaml(deep.as_bytes()), Err(format!("yaml: exceeded max depth of {MAX_DEPTH}")));
        let on_line_3 = format!("kind: x\nmetadata:\n  a: {}", "{b: ".repeat(200));
        assert_eq!(check_yaml(on_line_3.as_bytes()), Err(format!("yaml: line 3: exceeded max depth of {MAX_DEPTH}")));
        let ok = format!("a: {}", nested("[", "]", MAX_DEPTH));
        assert!(check_yaml(ok.as_bytes()).is_ok());
        assert!(serde_yaml::from_str::<serde_json::Value>(&ok).is_ok(), "libyaml reads what the check passes");
    }

    #[test]
    fn yaml_text_that_only_looks_deep_passes() {
        let many = "[".repeat(300);
        for doc in [
            format!("a: x{many}\n"),                                         // inside a plain scalar
            format!("a: \"{many}\"\n"),                                      // double-quoted
            format!("a: '{many}'' ''{many}'\n"),                             // single-quoted, '' escapes
            format!("a: 1 # {many}\n"),                                      // a comment
            format!("data:\n  script: |\n    {many}\n\n    {many}\nb: 1\n"), // a block scalar
            format!("- >-\n  {many}\n- c\n"),                                // a folded one in a sequence
            format!("a: \"x\\\"{many}\"\n"),                                 // an escaped quote
        ] {
            assert!(check_yaml(doc.as_bytes()).is_ok(), "{doc}");
            assert!(serde_yaml::from_str::<serde_json::Value>(&doc).is_ok(), "libyaml reads it too: {doc}");
        }
        // After the block scalar the structure counts again.
        let after = format!("a: |\n  x\nb: {}\n", "[".repeat(MAX_DEPTH + 1));
        assert!(check_yaml(after.as_bytes()).is_err());
    }
}

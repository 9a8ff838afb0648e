//! Passwords in URLs (`http://svc:PW@host`, `mongodb://user:PW@db`) never reach a log, an
//! error or an answer: every URL or message that may hold one goes through [`text`].

/// `text` with the user information of every `scheme://user:password@host` in it replaced
/// by `***`.
pub fn text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        // The authority ends at the path, query, fragment, or where the URL ends in prose.
        let end = after
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '"' | '\'' | '>' | ')') || c.is_whitespace()
            })
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(i) => {
                out.push_str("***");
                out.push_str(&authority[i..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_information_is_replaced_wherever_a_url_appears() {
        assert_eq!(
            text("http://svc:PW@session-recorder:8090/x"),
            "http://***@session-recorder:8090/x"
        );
        assert_eq!(
            text(
                "error sending request for url (http://u:p%40ss@h:1/a): refused; mongodb://a:b@db,c:d@e/?x=1"
            ),
            "error sending request for url (http://***@h:1/a): refused; mongodb://***@e/?x=1"
        );
        assert_eq!(
            text("http://session-storage:8081"),
            "http://session-storage:8081"
        );
        assert_eq!(text("no url at all"), "no url at all");
        assert_eq!(text("redis://:secret@r"), "redis://***@r");
    }
}

//! Just enough HTML to read the SPEC's web pages ("Web pages a browser (and a test) can rely
//! on"): the forms of a page with their method, action, hidden inputs, input names and
//! `<button>`s, and a page's visible text for error messages. A forgiving scanner, not a
//! parser: attributes may come in any order and be double-, single- or unquoted, names are
//! case-insensitive, character references are decoded, comments are skipped.

/// One `<form>` of a page.
#[derive(Debug, Clone, Default)]
pub struct Form {
    /// Lower-cased; empty when absent (HTML's default is `get`).
    pub method: String,
    pub action: Option<String>,
    /// `(name, value)` of each `<input type="hidden">`, in document order.
    pub hidden: Vec<(String, String)>,
    /// The name of every `<input>`.
    pub inputs: Vec<String>,
    pub buttons: Vec<Button>,
}

impl Form {
    pub fn has_input(&self, name: &str) -> bool {
        self.inputs.iter().any(|n| n == name)
    }

    /// The `<button>` whose text is `text`.
    pub fn button(&self, text: &str) -> Option<&Button> {
        self.buttons.iter().find(|b| b.text == text)
    }

    /// The value of the hidden input `name` (a CSRF token, say).
    pub fn hidden_value(&self, name: &str) -> Option<&str> {
        self.hidden
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, Default)]
pub struct Button {
    /// Empty when the button has no name (then nothing of it is posted).
    pub name: String,
    pub value: String,
    /// The text content, markup removed and whitespace collapsed.
    pub text: String,
}

enum Node {
    Open {
        name: String,
        attrs: Vec<(String, String)>,
    },
    Close(String),
    Text(String),
}

/// The byte index of the `>` that ends the tag starting at `s` (which starts with `<`),
/// ignoring any `>` inside quoted attribute values.
fn tag_end(s: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '>' => return Some(i),
            None => {}
        }
    }
    None
}

fn parse_tag(inner: &str) -> Node {
    let mut chars = inner.chars().peekable();
    let closing = chars.peek() == Some(&'/');
    if closing {
        chars.next();
    }
    let mut name = String::new();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() || c == '/' {
            break;
        }
        name.push(c.to_ascii_lowercase());
        chars.next();
    }
    if closing {
        return Node::Close(name);
    }
    let mut attrs = Vec::new();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == '/') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut attr = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() || c == '=' || c == '/' {
                break;
            }
            attr.push(c.to_ascii_lowercase());
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            match chars.peek().copied() {
                Some(q @ ('"' | '\'')) => {
                    chars.next();
                    for c in chars.by_ref() {
                        if c == q {
                            break;
                        }
                        value.push(c);
                    }
                }
                _ => {
                    while let Some(&c) = chars.peek() {
                        if c.is_whitespace() {
                            break;
                        }
                        value.push(c);
                        chars.next();
                    }
                }
            }
        }
        if attr.is_empty() {
            // A stray character such as `=`: skip it rather than loop forever.
            chars.next();
            continue;
        }
        attrs.push((attr, unescape(&value)));
    }
    Node::Open { name, attrs }
}

fn lex(html: &str) -> Vec<Node> {
    let mut out = Vec::new();
    let mut rest = html;
    while !rest.is_empty() {
        let Some(i) = rest.find('<') else {
            out.push(Node::Text(rest.to_owned()));
            break;
        };
        let (text, tag) = rest.split_at_checked(i).unwrap_or((rest, ""));
        if !text.is_empty() {
            out.push(Node::Text(text.to_owned()));
        }
        if let Some(after) = tag.strip_prefix("<!--") {
            rest = after
                .find("-->")
                .and_then(|e| after.get(e + 3..))
                .unwrap_or("");
            continue;
        }
        let Some(end) = tag_end(tag) else {
            break;
        };
        let inner = tag.get(1..end).unwrap_or("");
        rest = tag.get(end + 1..).unwrap_or("");
        if inner.starts_with('!') || inner.starts_with('?') || inner.is_empty() {
            continue;
        }
        out.push(parse_tag(inner));
    }
    out
}

fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Every `<form>` of `html`, in document order.
pub fn forms(html: &str) -> Vec<Form> {
    let mut out = Vec::new();
    let mut form: Option<Form> = None;
    let mut button: Option<(Button, String)> = None;
    for node in lex(html) {
        match node {
            Node::Open { name, attrs } => match name.as_str() {
                "form" => {
                    if let Some(f) = form.take() {
                        out.push(f);
                    }
                    form = Some(Form {
                        method: attr(&attrs, "method")
                            .unwrap_or_default()
                            .to_ascii_lowercase(),
                        action: attr(&attrs, "action").map(str::to_owned),
                        ..Form::default()
                    });
                }
                "input" => {
                    if let Some(f) = form.as_mut() {
                        let name = attr(&attrs, "name").unwrap_or_default().to_owned();
                        let kind = attr(&attrs, "type").unwrap_or("text").to_ascii_lowercase();
                        if kind == "hidden" && !name.is_empty() {
                            let value = attr(&attrs, "value").unwrap_or_default().to_owned();
                            f.hidden.push((name.clone(), value));
                        }
                        f.inputs.push(name);
                    }
                }
                "button" if form.is_some() => {
                    button = Some((
                        Button {
                            name: attr(&attrs, "name").unwrap_or_default().to_owned(),
                            value: attr(&attrs, "value").unwrap_or_default().to_owned(),
                            text: String::new(),
                        },
                        String::new(),
                    ));
                }
                _ => {}
            },
            Node::Text(t) => {
                if let Some((_, text)) = button.as_mut() {
                    text.push_str(&t);
                }
            }
            Node::Close(name) => match name.as_str() {
                "button" => {
                    if let (Some((mut b, text)), Some(f)) = (button.take(), form.as_mut()) {
                        b.text = unescape(&text)
                            .split_whitespace()
                            .collect::<Vec<_>>()
                            .join(" ");
                        f.buttons.push(b);
                    }
                }
                "form" => {
                    if let Some(f) = form.take() {
                        out.push(f);
                    }
                }
                _ => {}
            },
        }
    }
    if let Some(f) = form.take() {
        out.push(f);
    }
    out
}

/// The visible text of a page (markup and comments dropped, references decoded, whitespace
/// collapsed), cut to `max` characters: what a failure message shows of an unexpected page.
pub fn text_of(html: &str, max: usize) -> String {
    const HIDDEN: [&str; 4] = ["head", "title", "script", "style"];
    let mut hidden_depth = 0usize;
    let mut text = String::new();
    for node in lex(html) {
        match node {
            Node::Open { name, .. } if HIDDEN.contains(&name.as_str()) => hidden_depth += 1,
            Node::Close(name) if HIDDEN.contains(&name.as_str()) => {
                hidden_depth = hidden_depth.saturating_sub(1);
            }
            Node::Text(t) if hidden_depth == 0 => {
                text.push(' ');
                text.push_str(&unescape(&t));
            }
            _ => {}
        }
    }
    let mut out = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.chars().count() > max {
        out = out.chars().take(max).collect::<String>() + "…";
    }
    out
}

/// HTML character references: the named ones for `&<>"'` and non-breaking space, and any
/// numeric one. Anything else is left as written.
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        let (before, at) = rest.split_at_checked(i).unwrap_or((rest, ""));
        out.push_str(before);
        let decoded = at.find(';').and_then(|end| {
            let entity = at.get(1..end)?;
            let c = match entity {
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                "quot" => '"',
                "apos" => '\'',
                "nbsp" => '\u{a0}',
                _ => {
                    let num = entity.strip_prefix('#')?;
                    let n = match num.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                        None => num.parse().ok()?,
                    };
                    char::from_u32(n)?
                }
            };
            Some((c, end + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = at.get(len..).unwrap_or("");
            }
            None => {
                out.push('&');
                rest = at.get(1..).unwrap_or("");
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOGIN: &str = r#"<!DOCTYPE html><html><body>
<!-- <form method="get"> not this one -->
<form method="POST" action="/login?x=1&amp;y=2">
<input type="hidden" name="csrf_token" value="a&quot;b">
<input type=hidden name='pending' value='q=1&amp;r=&#x32;'>
<label for="username">Username</label>
<input type="text" id="username" name="username" value="" required autofocus>
<input type="password" name="password">
<button type="submit">Sign in</button>
</form></body></html>"#;

    #[test]
    fn reads_a_login_form() {
        let f = forms(LOGIN);
        assert_eq!(f.len(), 1);
        let Some(form) = f.first() else { return };
        assert_eq!(form.method, "post");
        assert_eq!(form.action.as_deref(), Some("/login?x=1&y=2"));
        assert_eq!(
            form.hidden,
            vec![
                ("csrf_token".to_owned(), "a\"b".to_owned()),
                ("pending".to_owned(), "q=1&r=2".to_owned())
            ]
        );
        assert!(form.has_input("username") && form.has_input("password"));
        assert_eq!(form.buttons.len(), 1);
    }

    #[test]
    fn reads_consent_buttons() {
        let html = r#"<form method="post" action="/consent"><input type="hidden" name="c" value="1">
<div><button type="submit" name="decision" value="approve">
  <span>Approve</span></button>
<button name="decision" value="deny" class="x > y">Deny</button></div></form>"#;
        let f = forms(html);
        let b = f.first().and_then(|f| f.button("Approve"));
        assert_eq!(
            b.map(|b| (b.name.as_str(), b.value.as_str())),
            Some(("decision", "approve"))
        );
        assert!(f.first().and_then(|f| f.button("Deny")).is_some());
    }

    #[test]
    fn unescapes_references() {
        assert_eq!(unescape("a&amp;b&#39;c&unknown;&"), "a&b'c&unknown;&");
        assert_eq!(
            unescape("&#x2F;&#47;&lt;&gt;&nbsp;&#xZZ;"),
            "//<>\u{a0}&#xZZ;"
        );
    }

    #[test]
    fn attributes_in_any_order_and_case() {
        let html = r#"<FORM ACTION='/a' Method=Post><INPUT VALUE="v&amp;w" Name="csrf_token" TYPE="HIDDEN"/>
<input value=x type=hidden name=n /><input name="q" type="text" value="typed">
<input type="hidden" value="no name"></FORM>"#;
        let f = forms(html);
        let Some(form) = f.first() else {
            panic!("no form in {html}")
        };
        assert_eq!(
            (form.method.as_str(), form.action.as_deref()),
            ("post", Some("/a"))
        );
        assert_eq!(form.hidden_value("csrf_token"), Some("v&w"));
        assert_eq!(form.hidden_value("n"), Some("x"));
        // A visible input is listed by name, never posted as hidden; a nameless one is neither.
        assert!(form.has_input("q") && form.hidden_value("q").is_none());
        assert_eq!(form.hidden.len(), 2);
    }

    #[test]
    fn several_forms_stay_apart() {
        // The approvals page: one form per pending request, each with its own hidden inputs.
        let html = r#"<input type="hidden" name="stray" value="outside any form">
<form method="post" action="/approvals"><input type="hidden" name="request" value="r1">
<button name="decision" value="approve">Approve</button><button name="decision" value="deny">Deny</button></form>
<p>between</p>
<form method="post" action="/approvals"><input type="hidden" name="request" value="r2">
<button name="decision" value="deny">Deny</button>
<form method="get" action="/search"><input name="q"><button>Search</button>"#;
        let f = forms(html);
        let requests: Vec<Option<&str>> = f.iter().map(|f| f.hidden_value("request")).collect();
        assert_eq!(requests, [Some("r1"), Some("r2"), None]);
        let buttons: Vec<usize> = f.iter().map(|f| f.buttons.len()).collect();
        assert_eq!(
            buttons,
            [2, 1, 1],
            "an unclosed form ends where the next begins"
        );
        assert!(f.iter().all(|f| f.hidden_value("stray").is_none()));
        assert_eq!(f.get(2).map(|f| f.method.as_str()), Some("get"));
        assert!(f.get(1).and_then(|f| f.button("Approve")).is_none());
    }

    #[test]
    fn no_forms_and_broken_markup() {
        assert!(forms("<p>no form here</p>").is_empty());
        assert!(forms("").is_empty());
        // A tag cut off mid-way ends the scan without a panic.
        let f =
            forms(r#"<form method="post"><input type="hidden" name="a" value="1"><input name="b"#);
        assert_eq!(f.first().and_then(|f| f.hidden_value("a")), Some("1"));
    }

    #[test]
    fn visible_text_of_a_page() {
        let html = "<html><head><title>T</title><style>p{}</style></head><body><h1>Not\n  found</h1>\
<!-- hidden --><p>a &amp; b</p><script>x()</script></body></html>";
        assert_eq!(text_of(html, 100), "Not found a & b");
        assert_eq!(text_of(html, 5), "Not f…");
    }
}

//! Arduino sketch (`.ino`) to C++ (`.ino.cpp`), as the Arduino tools prepare a sketch for the
//! compiler: `#include <Arduino.h>` first (unless the sketch has it), a prototype for every
//! function the sketch defines at file scope and does not declare itself (so `setup()` may
//! call a function defined below it), inserted just before the first function definition, and
//! `#line` directives so the compiler's diagnostics name the sketch's own file and lines.
//!
//! The Arduino tools find the functions with ctags or libclang; this is a small scanner of
//! its own (comments, string and character literals, raw strings, preprocessor lines and
//! brace depth), so nothing has to be installed beside zccache. What it does not prototype,
//! like the Arduino tools: template functions, class members defined outside their class,
//! operators, functions inside namespaces or `extern "C"` blocks, and functions with default
//! arguments (a prototype would repeat them; declare those yourself).

use std::io;
use std::path::Path;

/// How a sketch is converted.
#[derive(Debug, Clone)]
pub struct Options {
    /// Put `#include <Arduino.h>` first (unless the sketch includes it itself).
    pub arduino_include: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            arduino_include: true,
        }
    }
}

/// What the conversion found, besides the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    pub cpp: String,
    /// The prototypes added, in order, without their `#line` directives.
    pub prototypes: Vec<String>,
}

/// Converts the sketch `source`; `#line` directives name `line_path`.
pub fn convert(source: &str, line_path: &str, options: &Options) -> Converted {
    let items = scan(source);
    let declared: Vec<&str> = items
        .iter()
        .filter(|item| !item.definition)
        .map(|item| item.name.as_str())
        .collect();
    let mut prototypes: Vec<(usize, String)> = Vec::new();
    for item in items.iter().filter(|item| item.definition) {
        let Some(prototype) = &item.prototype else {
            continue;
        };
        if declared.contains(&item.name.as_str())
            || prototypes.iter().any(|(_, known)| known == prototype)
        {
            continue;
        }
        prototypes.push((item.line, prototype.clone()));
    }
    let insert_at = items
        .iter()
        .find(|item| item.definition)
        .map(|item| item.line);
    let quoted = quote_path(line_path);
    let mut cpp = String::with_capacity(source.len() + 256);
    if options.arduino_include && !includes_arduino_h(source) {
        cpp.push_str("#include <Arduino.h>\n");
    }
    cpp.push_str(&format!("#line 1 {quoted}\n"));
    for (index, line) in source.split_inclusive('\n').enumerate() {
        let number = index + 1;
        if Some(number) == insert_at && !prototypes.is_empty() {
            for (line, prototype) in &prototypes {
                cpp.push_str(&format!("#line {line} {quoted}\n{prototype}\n"));
            }
            cpp.push_str(&format!("#line {number} {quoted}\n"));
        }
        cpp.push_str(line);
    }
    if !cpp.ends_with('\n') {
        cpp.push('\n');
    }
    Converted {
        cpp,
        prototypes: prototypes.into_iter().map(|(_, p)| p).collect(),
    }
}

/// Converts the sketch at `input` into `output`, written whole or not at all (a temporary
/// file beside it, renamed into place). `#line` directives name `input` as given.
pub fn convert_file(input: &Path, output: &Path, options: &Options) -> io::Result<Converted> {
    let bytes = std::fs::read(input)
        .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", input.display())))?;
    let source = String::from_utf8_lossy(&bytes);
    let converted = convert(&source, &input.to_string_lossy(), options);
    let dir = match output.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", dir.display())))?;
    let mut temporary = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("writing in {}: {e}", dir.display())))?;
    io::Write::write_all(&mut temporary, converted.cpp.as_bytes())?;
    temporary.persist(output).map_err(|e| {
        io::Error::new(
            e.error.kind(),
            format!("writing {}: {}", output.display(), e.error),
        )
    })?;
    Ok(converted)
}

fn includes_arduino_h(source: &str) -> bool {
    source.lines().any(|line| {
        let line = line.trim_start();
        line.strip_prefix('#')
            .map(str::trim_start)
            .and_then(|rest| rest.strip_prefix("include"))
            .map(str::trim)
            .is_some_and(|name| name == "<Arduino.h>" || name == "\"Arduino.h\"")
    })
}

/// `path` as a C string literal.
fn quote_path(path: &str) -> String {
    let mut quoted = String::with_capacity(path.len() + 2);
    quoted.push('"');
    for c in path.chars() {
        if c == '\\' || c == '"' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// A function the sketch declares or defines at file scope.
#[derive(Debug)]
struct Item {
    name: String,
    /// Defined here (with a body), not only declared.
    definition: bool,
    /// The prototype to add for it, when one can be (see the crate's documentation).
    prototype: Option<String>,
    /// Where its declaration starts (1-based).
    line: usize,
}

/// The functions declared and defined at file scope, in order.
fn scan(source: &str) -> Vec<Item> {
    let bytes = source.as_bytes();
    let mut items = Vec::new();
    let mut depth = 0usize;
    let mut line = 1usize;
    // The file-scope statement being read (comments dropped, whitespace collapsed), and the
    // line it starts on.
    let mut head = String::new();
    let mut head_line = 0usize;
    let mut at_line_start = true;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\n' => {
                line += 1;
                at_line_start = true;
                if depth == 0 {
                    push(&mut head, &mut head_line, ' ', line);
                }
                i += 1;
                continue;
            }
            b'#' if at_line_start => {
                // A preprocessor line, with its continuations: never part of a declaration.
                while i < bytes.len() && bytes[i] != b'\n' {
                    if bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'\n') {
                        line += 1;
                        i += 1;
                    }
                    i += 1;
                }
                if depth == 0 {
                    head.clear();
                }
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    if bytes[i] == b'\n' {
                        line += 1;
                    }
                    i += 1;
                }
                i += 2;
                if depth == 0 {
                    push(&mut head, &mut head_line, ' ', line);
                }
                continue;
            }
            _ => {}
        }
        if !c.is_ascii_whitespace() {
            at_line_start = false;
        }
        match c {
            b'"' => {
                let raw = i > 0 && bytes[i - 1] == b'R';
                let end = if raw {
                    raw_string_end(bytes, i)
                } else {
                    quoted_end(bytes, i, b'"')
                };
                line += bytes[i..end].iter().filter(|&&b| b == b'\n').count();
                if depth == 0 {
                    head.push_str(&source[i..end]);
                }
                i = end;
                continue;
            }
            // A digit separator (1'000) is not a character literal.
            b'\'' if !(i > 0 && bytes[i - 1].is_ascii_alphanumeric()) => {
                let end = quoted_end(bytes, i, b'\'');
                if depth == 0 {
                    head.push_str(&source[i..end]);
                }
                i = end;
                continue;
            }
            b'{' => {
                if depth == 0 {
                    if let Some(mut item) = function_head(&head, true) {
                        item.line = head_line;
                        items.push(item);
                    }
                    head.clear();
                }
                depth += 1;
            }
            b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    head.clear();
                }
            }
            b';' if depth == 0 => {
                if let Some(mut item) = function_head(&head, false) {
                    item.line = head_line;
                    items.push(item);
                }
                head.clear();
            }
            _ if depth == 0 => {
                // Characters are pushed whole (a multi-byte one by its first byte's index).
                if let Some(ch) = source.get(i..).and_then(|rest| rest.chars().next()) {
                    push(&mut head, &mut head_line, ch, line);
                    i += ch.len_utf8();
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    items
}

/// Appends `c` to the statement being read: whitespace collapsed, and the line of its first
/// character noted.
fn push(head: &mut String, head_line: &mut usize, c: char, line: usize) {
    if c.is_whitespace() {
        if !head.is_empty() && !head.ends_with(' ') {
            head.push(' ');
        }
    } else {
        if head.is_empty() {
            *head_line = line;
        }
        head.push(c);
    }
}

/// The index just past the literal that starts at `start` with `quote` (escapes honoured; an
/// unterminated one ends at the line's end).
fn quoted_end(bytes: &[u8], start: usize, quote: u8) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'\n' => return i,
            b if b == quote => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// The index just past the raw string `R"delim( … )delim"` whose quote is at `start`.
fn raw_string_end(bytes: &[u8], start: usize) -> usize {
    let Some(open) = bytes[start..].iter().position(|&b| b == b'(') else {
        return quoted_end(bytes, start, b'"');
    };
    let delimiter = &bytes[start + 1..start + open];
    let mut closing = vec![b')'];
    closing.extend_from_slice(delimiter);
    closing.push(b'"');
    let body = start + open + 1;
    bytes[body..]
        .windows(closing.len())
        .position(|w| w == closing.as_slice())
        .map_or(bytes.len(), |at| body + at + closing.len())
}

const NOT_FUNCTION_NAMES: &[&str] = &[
    "if",
    "while",
    "for",
    "switch",
    "return",
    "sizeof",
    "alignof",
    "decltype",
    "catch",
    "static_assert",
    "defined",
];

/// Words that may follow a function's parameter list before its body or `;`.
const AFTER_PARAMETERS: &[&str] = &["const", "noexcept", "throw", "volatile", "&", "&&"];

/// A function declared (`definition` false, read up to its `;`) or defined (read up to its
/// `{`) by the file-scope statement `head`, if that is one.
fn function_head(head: &str, definition: bool) -> Option<Item> {
    let head = head.trim();
    let first_word = head.split([' ', '(', '<']).next().unwrap_or("");
    if matches!(
        first_word,
        "template" | "typedef" | "using" | "namespace" | "extern" | "class" | "union" | "enum"
    ) {
        return None;
    }
    let open = head.find('(')?;
    let before = head[..open].trim_end();
    if before.contains('=') || before.contains("operator") {
        return None;
    }
    let name_start = before
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map_or(0, |at| at + 1);
    let name = &before[name_start..];
    let return_type = before[..name_start].trim();
    if name.is_empty()
        || name.as_bytes()[0].is_ascii_digit()
        || NOT_FUNCTION_NAMES.contains(&name)
        || return_type.is_empty()
        || return_type.ends_with("::")
        || !return_type.contains(|c: char| c.is_ascii_alphabetic() || c == '_')
    {
        return None;
    }
    let close = matching_paren(head, open)?;
    let parameters = &head[open + 1..close];
    let after = head[close + 1..].trim();
    let qualified = after.is_empty()
        || after.starts_with("->")
        || after.starts_with("__attribute__")
        || after.split(' ').all(|word| {
            AFTER_PARAMETERS
                .iter()
                .any(|w| word == *w || (word.starts_with(w) && word[w.len()..].starts_with('(')))
        });
    if !qualified {
        return None;
    }
    let default_arguments = top_level_contains(parameters, '=');
    let prototype = (definition && !default_arguments).then(|| format!("{head};"));
    Some(Item {
        name: name.to_string(),
        definition,
        prototype,
        line: 0,
    })
}

/// The index of the `)` that closes the `(` at `open`.
fn matching_paren(text: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (at, c) in text[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(open + at);
                }
            }
            _ => {}
        }
    }
    None
}

/// Whether `wanted` occurs in `text` outside any parentheses, brackets or angle brackets.
fn top_level_contains(text: &str, wanted: char) -> bool {
    let mut depth = 0i32;
    for c in text.chars() {
        match c {
            '(' | '[' | '<' | '{' => depth += 1,
            ')' | ']' | '>' | '}' => depth -= 1,
            _ if c == wanted && depth <= 0 => return true,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prototypes(source: &str) -> Vec<String> {
        convert(source, "s.ino", &Options::default()).prototypes
    }

    #[test]
    fn the_default_sketch_as_the_arduino_tools_convert_it() {
        let sketch = "\nvoid setup() {\n    // put your setup code here, to run once:\n\n}\n\n\
                      void loop() {\n    // put your main code here, to run repeatedly:\n\n}\n";
        let converted = convert(sketch, "/w/sketch.ino", &Options::default());
        assert_eq!(
            converted.cpp,
            "#include <Arduino.h>\n#line 1 \"/w/sketch.ino\"\n\n\
             #line 2 \"/w/sketch.ino\"\nvoid setup();\n\
             #line 7 \"/w/sketch.ino\"\nvoid loop();\n\
             #line 2 \"/w/sketch.ino\"\nvoid setup() {\n    // put your setup code here, to run once:\n\n}\n\n\
             void loop() {\n    // put your main code here, to run repeatedly:\n\n}\n"
        );
    }

    #[test]
    fn functions_get_prototypes_in_order_of_definition() {
        let sketch = "#include <Servo.h>\nServo s(9);\nint led = 13; // {\n\
                      const char *name = \"}{\";\nchar brace = '{';\n\
                      void setup() { blink(2); }\nvoid loop() {\n  if (x) { y(); }\n}\n\
                      static int\nblink(int times,\n      long gap) {\n  return times;\n}\n";
        assert_eq!(
            prototypes(sketch),
            [
                "void setup();",
                "void loop();",
                "static int blink(int times, long gap);"
            ]
        );
        let cpp = convert(sketch, "s.ino", &Options::default()).cpp;
        assert!(cpp.contains("#line 10 \"s.ino\"\nstatic int blink(int times, long gap);\n"));
        assert!(
            cpp.contains("#line 6 \"s.ino\"\nvoid setup() { blink(2); }"),
            "{cpp}"
        );
    }

    #[test]
    fn what_gets_no_prototype() {
        let sketch = "int declared(int);\nstruct P { int x; int get() { return x; } };\n\
                      namespace n { void inner() {} }\nextern \"C\" { void c_side() {} }\n\
                      template <typename T> T twice(T v) { return v + v; }\n\
                      int P::other() { return 1; }\nbool operator==(P a, P b) { return a.x == b.x; }\n\
                      void defaults(int a = 3) {}\nint declared(int v) { return v; }\n\
                      ISR(TIMER1_COMPA_vect) { }\nint table[] = { 1, 2 };\n\
                      auto later() -> int { return 2; }\nvoid kept() const_fn {}\n";
        assert_eq!(prototypes(sketch), ["auto later() -> int;"]);
    }

    #[test]
    fn comments_strings_and_raw_strings_do_not_confuse_the_braces() {
        let sketch = "/* void fake() { */\nconst char *r = R\"x(}{)\" )x\";\n\
                      // void commented() {\nvoid real(const char *s = nullptr);\n\
                      void real(const char *s) { const char *t = \"{\"; }\nvoid after() {}\n";
        assert_eq!(prototypes(sketch), ["void after();"]);
    }

    #[test]
    fn a_sketch_that_includes_arduino_h_or_asks_for_none_gets_no_include() {
        let sketch = "#include \"Arduino.h\"\nvoid setup() {}\n";
        assert!(!convert(sketch, "s.ino", &Options::default())
            .cpp
            .starts_with("#include <Arduino.h>"));
        let none = Options {
            arduino_include: false,
        };
        assert!(convert("void f() {}\n", "s.ino", &none)
            .cpp
            .starts_with("#line 1 \"s.ino\"\n"));
    }

    #[test]
    fn paths_are_quoted_for_line_directives() {
        let cpp = convert("int x;\n", "C:\\sk\\a\"b.ino", &Options::default()).cpp;
        assert!(
            cpp.contains("#line 1 \"C:\\\\sk\\\\a\\\"b.ino\"\n"),
            "{cpp}"
        );
    }
}

//! Column-aligned tables in kubectl's style (upper-case headers, three spaces between columns),
//! with optional ANSI colour that never affects alignment.

/// What a cell means, which decides its colour on a terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    Plain,
    Good,
    Warn,
    Bad,
    Dim,
}

impl Tone {
    fn ansi(self) -> Option<&'static str> {
        match self {
            Tone::Plain => None,
            Tone::Good => Some("\x1b[32m"),
            Tone::Warn => Some("\x1b[33m"),
            Tone::Bad => Some("\x1b[31m"),
            Tone::Dim => Some("\x1b[2m"),
        }
    }
}

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";
const GAP: &str = "   ";

/// One cell: its text and its tone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cell {
    pub text: String,
    pub tone: Tone,
}

impl Cell {
    pub fn new(text: impl Into<String>, tone: Tone) -> Cell {
        Cell {
            text: text.into(),
            tone,
        }
    }
    pub fn plain(text: impl Into<String>) -> Cell {
        Cell::new(text, Tone::Plain)
    }
}

/// A table being built.
#[derive(Clone, Debug, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new<S: Into<String>>(headers: impl IntoIterator<Item = S>) -> Table {
        Table {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row, each ending in `\n`; no trailing spaces.
    pub fn render(&self, colour: bool) -> String {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (i, c) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(width(&c.text));
            }
        }
        let mut out = String::new();
        let header: Vec<Cell> = self.headers.iter().map(Cell::plain).collect();
        line(&mut out, &header, &widths, colour, true);
        for row in &self.rows {
            line(&mut out, row, &widths, colour, false);
        }
        out
    }
}

fn line(out: &mut String, cells: &[Cell], widths: &[usize], colour: bool, header: bool) {
    let mut text = String::new();
    let last = cells.len().min(widths.len()).saturating_sub(1);
    for (i, c) in cells.iter().enumerate().take(widths.len()) {
        let pad = if i == last {
            0
        } else {
            widths[i] - width(&c.text)
        };
        let code = if header { Some(BOLD) } else { c.tone.ansi() };
        match code.filter(|_| colour) {
            Some(code) => {
                text.push_str(code);
                text.push_str(&c.text);
                text.push_str(RESET);
            }
            None => text.push_str(&c.text),
        }
        text.push_str(&" ".repeat(pad));
        if i != last {
            text.push_str(GAP);
        }
    }
    out.push_str(text.trim_end());
    out.push('\n');
}

/// Display width: characters, since every text here is ASCII or single-width arrows.
fn width(s: &str) -> usize {
    s.chars().count()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn columns_align_and_colour_does_not_shift_them() {
        let mut t = Table::new(["NAME", "STATE", "LAG"]);
        t.row(vec![
            Cell::plain("east→west"),
            Cell::new("Ready", Tone::Good),
            Cell::plain("0"),
        ]);
        t.row(vec![
            Cell::plain("a"),
            Cell::new("Degraded", Tone::Bad),
            Cell::plain("12"),
        ]);
        let plain = t.render(false);
        assert_eq!(
            plain,
            "NAME        STATE      LAG\neast→west   Ready      0\na           Degraded   12\n"
        );
        let coloured = t.render(true);
        let stripped = strip_ansi(&coloured);
        assert_eq!(stripped, plain);
        assert!(coloured.contains("\x1b[32mReady\x1b[0m"));
    }

    #[test]
    fn plain_output_has_no_escape_codes() {
        let mut t = Table::new(["A"]);
        t.row(vec![Cell::new("x", Tone::Bad)]);
        assert!(!t.render(false).contains('\x1b'));
    }

    pub(crate) fn strip_ansi(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for d in chars.by_ref() {
                    if d == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }
}

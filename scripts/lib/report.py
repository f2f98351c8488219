"""report.py: the tables the benchmarks print (scripts/bench/*.sh), as text and as markdown.

  import sys; sys.path.insert(0, "scripts/lib"); from report import median, text_table, md_table, emit
"""


def median(values):
    """The median; None when there are no values or one of them is None (a failed run)."""
    if not values or any(v is None for v in values):
        return None
    v = sorted(values)
    m = len(v) // 2
    return v[m] if len(v) % 2 else (v[m - 1] + v[m]) / 2


def numeric(col):
    """Every cell of the column is a number (a trailing "x" allowed) or "-"."""
    def isnum(c):
        try:
            float(str(c).rstrip("x"))
            return True
        except ValueError:
            return c == "-"
    return all(isnum(c) for c in col)


def _right(hdr, body, right):
    if right is not None:
        return right
    return [i > 0 and numeric(col) for i, col in enumerate(zip(*body))] if body else [False] * len(hdr)


def text_table(hdr, body, right=None):
    """Aligned columns under a dashed rule; RIGHT (one bool per column) or numeric columns
    but the first are right-aligned."""
    widths = [max(len(str(x)) for x in col) for col in zip(hdr, *body)]
    right = _right(hdr, body, right)

    def line(cells):
        return "  ".join(str(c).rjust(w) if r else str(c).ljust(w) for c, w, r in zip(cells, widths, right)).rstrip()
    return "\n".join([line(hdr), line(["-" * w for w in widths])] + [line(r) for r in body])


def md_table(hdr, body, right=None):
    """The same table in markdown; a cell that starts with two spaces is indented (&nbsp;)."""
    right = _right(hdr, body, right)
    out = ["| " + " | ".join(hdr) + " |", "|" + "|".join("---:" if r else "---" for r in right) + "|"]
    for r in body:
        cells = [("&nbsp;&nbsp;" + str(c).strip()) if str(c).startswith("  ") else str(c) for c in r]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def emit(section, md_file):
    """Appends the markdown SECTION to MD_FILE, or prints it after a marker when there is none."""
    if md_file:
        with open(md_file, "a") as f:
            f.write(section)
        print("\n(markdown appended to %s)" % md_file)
    else:
        print("\n--- markdown ---" + section)

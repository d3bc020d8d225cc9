"""install.ps1 parsed with tree-sitter's PowerShell grammar: no syntax errors.

PowerShell itself cannot be had on the Linux machines this project is tested on (no Debian,
PyPI or npm package ships it), so this is the check install.ps1 gets here: a grammar parse,
which catches unbalanced braces, quotes and parentheses and malformed statements, not what
PowerShell would make of the script at run time.

    python tests/install/ps1-syntax.py install.ps1     (needs tree-sitter, tree-sitter-powershell)
"""

import sys

import tree_sitter_powershell
from tree_sitter import Language, Parser


def errors(source: bytes):
    tree = Parser(Language(tree_sitter_powershell.language())).parse(source)
    found = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_missing:
            found.append(node)
        stack.extend(node.children)
    return sorted(found, key=lambda n: n.start_byte)


def main():
    passed = failed = 0
    for path in sys.argv[1:]:
        source = open(path, "rb").read()
        problems = []
        try:
            source.decode("ascii")
        except UnicodeDecodeError as e:
            problems.append(f"{path}: not ASCII at byte {e.start} (irm decodes a script by the server's headers)")
        for node in errors(source):
            text = source[node.start_byte:node.end_byte][:60].decode(errors="replace")
            kind = "missing" if node.is_missing else "syntax error"
            problems.append(f"{path}:{node.start_point[0] + 1}: {kind}: {text!r}")
        for problem in problems:
            print(problem)
        if problems:
            failed += 1
        else:
            passed += 1
    print(f"ps1-syntax: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Prefixes every function declaration at file scope in include/uhlm/*.h with UHLM_API (run it
after adding a public header or declarations; tests/cli_install.sh fails on one left out).
Re-runnable: lines that already carry it are left alone."""
import glob, os, re
os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
decl = re.compile(r'^(?!typedef\b|extern\b|static\b|#|UHLM_API\b)[A-Za-z_][\w \*]*?\b\w+\s*\(')
for path in sorted(glob.glob('include/uhlm/*.h')):
    out, depth, in_comment, changed = [], 0, False, 0
    for line in open(path).read().split('\n'):
        code = line
        # strip comments to track braces and decide
        s, i, visible = code, 0, ''
        while i < len(s):
            if in_comment:
                j = s.find('*/', i)
                if j < 0: i = len(s); break
                in_comment, i = False, j + 2
            elif s.startswith('/*', i): in_comment, i = True, i + 2
            elif s.startswith('//', i): break
            else: visible += s[i]; i += 1
        starts_visible = not line.startswith((' ', '\t', '*')) and visible.strip() != '' and line.strip()[:2] != '/*'
        if depth == 0 and starts_visible and decl.match(line) and '(*' not in visible.split('(')[0]:
            line = 'UHLM_API ' + line
            changed += 1
        depth += visible.count('{') - visible.count('}')
        if 'extern "C" {' in visible: depth -= 1
        if re.match(r'^\}\s*$', visible.strip()) and depth < 0: depth = 0
        out.append(line)
    if changed:
        open(path, 'w').write('\n'.join(out))
    print(path, changed)

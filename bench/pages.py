"""Realistic, deterministic HTML benchmark pages of exact sizes: page-10k.html (10,240 bytes) and
page-100k.html (102,400 bytes), written into the folder given. Used by bench/run.sh and bench/profile.sh."""
import random, sys
out = sys.argv[1]
words = ("proxy upstream latency request response header cache origin server client "
         "connection keepalive throughput benchmark policy route listener timeout retry "
         "buffer stream socket kernel thread worker event loop memory allocation config "
         "deploy release metric trace span error status health ready the a of and to in "
         "for with on by is are was be this that from at as it can will not we our").split()
def sentence(r):
    n = r.randint(8, 20)
    s = " ".join(r.choice(words) for _ in range(n))
    return s[0].upper() + s[1:] + "."
def para(r):
    return "<p>" + " ".join(sentence(r) for _ in range(r.randint(3, 6))) + "</p>\n"
def section(r, i):
    parts = [f'<section id="s{i}">\n<h2>{sentence(r)[:-1].title()}</h2>\n']
    for _ in range(r.randint(2, 4)):
        parts.append(para(r))
    if i % 3 == 0:
        parts.append("<ul>\n" + "".join(f'<li><a href="/docs/{r.choice(words)}-{r.randint(1, 999)}">'
                                         f"{sentence(r)[:-1]}</a></li>\n" for _ in range(5)) + "</ul>\n")
    if i % 5 == 0:
        rows = "".join(f"<tr><td>{r.choice(words)}</td><td>{r.randint(1, 99999)}</td>"
                       f"<td>{r.random():.3f}</td></tr>\n" for _ in range(6))
        parts.append(f"<table>\n<thead><tr><th>name</th><th>count</th><th>ratio</th></tr></thead>\n"
                     f"<tbody>\n{rows}</tbody>\n</table>\n")
    parts.append("</section>\n")
    return "".join(parts)
def page(size, seed):
    r = random.Random(seed)
    head = ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>Concierge benchmark page ({size} bytes)</title>\n"
            '<link rel="stylesheet" href="/static/site.css">\n'
            "<style>body{font-family:system-ui,sans-serif;margin:0 auto;max-width:60em;"
            "line-height:1.5}nav a{margin-right:1em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:.2em .5em}</style>\n</head>\n<body>\n"
            '<header><nav id="top-nav"><a href="/">Home</a><a id="cta" href="/docs">Docs</a><a id="nav-blog" href="/blog">Blog</a>'
            '<a href="/about">About</a></nav></header>\n<main>\n<article>\n'
            f'<h1 id="hero">{sentence(r)[:-1].title()}</h1>\n')
    tail = ("</article>\n</main>\n<footer><p>&copy; 2024 Example Corp. All rights reserved.</p>"
            "</footer>\n</body>\n</html>\n")
    body, i = head, 1
    while True:
        s = section(r, i)
        if len(body) + len(s) + len(tail) > size:
            break
        body += s
        i += 1
    room = size - len(body) - len(tail)
    if room >= 8:  # pad with one last paragraph cut to the exact length
        filler = ""
        while len(filler) < room:
            filler += sentence(r) + " "
        body += "<p>" + filler[: room - 8].rstrip().ljust(room - 8) + "</p>\n"
    else:
        body += " " * room
    data = (body + tail).encode("ascii")
    assert len(data) == size, (len(data), size)
    return data
for name, size, seed in (("page-10k.html", 10240, 10), ("page-100k.html", 102400, 100)):
    with open(f"{out}/{name}", "wb") as f:
        f.write(page(size, seed))

"""mkdocs hooks (mkdocs.yml: ``hooks:``), run by ``mkdocs build`` and ``mkdocs serve``:

- the reference pages are generated from conf/, the config schema and the ``mnistlab`` parser
  (reference.py) and added to the site as if they were files in docs/;
- a link from a page to a file of the repository outside docs/ (``../../benchmarks/RESULTS.md``,
  which works on GitHub) must name a file that exists, and becomes a link to that file on GitHub
  when mkdocs.yml sets ``repo_url``, else to a copy of the file in the site (``_repo/...``).
"""

from __future__ import annotations

import logging
import posixpath
import re
from pathlib import Path

import reference  # beside this file: mkdocs puts this folder on sys.path while it loads the hook
from mkdocs.structure.files import File, Files, InclusionLevel

log = logging.getLogger("mkdocs.plugins.mnistlab")
#: a Markdown link or image target: ](target) or ](target#anchor)
LINK = re.compile(r"\]\((?P<target>[^)\s#]+)(?P<anchor>#[^)\s]*)?\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", flags=re.M | re.S)
COPIES = "_repo"  # where linked repository files go in the site when there is no repo_url


def _root(config) -> Path:
    return Path(config.config_file_path).resolve().parent


def _outside_docs(page_uri: str, target: str, config) -> str | None:
    """The repository path a page's relative link points at, if it leaves docs/; None otherwise."""
    if re.match(r"^[a-z][a-z0-9+.-]*:|^/", target):  # a URL, mailto:, or a site-absolute path
        return None
    docs = Path(config.docs_dir).resolve()
    resolved = (docs / posixpath.dirname(page_uri) / target).resolve()
    try:
        resolved.relative_to(docs)
        return None
    except ValueError:
        pass
    try:
        return resolved.relative_to(_root(config)).as_posix()
    except ValueError:
        return target  # outside the repository: reported as missing below


def _links(markdown: str):
    for match in LINK.finditer(FENCE.sub("", markdown)):
        yield match["target"]


def on_files(files: Files, config) -> Files:
    root = _root(config)
    for uri, text in reference.pages(root).items():
        files.append(File.generated(config, uri, content=text))
    if config.repo_url:
        return files
    wanted = set()
    for file in files.documentation_pages():
        for target in _links(file.content_string):
            path = _outside_docs(file.src_uri, target, config)
            if path and (root / path).is_file():
                wanted.add(path)
    for path in sorted(wanted):
        files.append(
            File.generated(
                config, f"{COPIES}/{path}", abs_src_path=str(root / path), inclusion=InclusionLevel.NOT_IN_NAV
            )
        )
    return files


def on_page_markdown(markdown: str, page, config, files: Files) -> str:
    root = _root(config)
    fenced = [(m.start(), m.end()) for m in FENCE.finditer(markdown)]

    def rewrite(match: re.Match) -> str:
        if any(start <= match.start() < end for start, end in fenced):
            return match[0]
        path = _outside_docs(page.file.src_uri, match["target"], config)
        if path is None:
            return match[0]
        if not (root / path).is_file():
            log.warning("%s links to %s, which is not a file of the repository", page.file.src_uri, match["target"])
            return match[0]
        if config.repo_url:
            url = f"{config.repo_url.rstrip('/')}/blob/main/{path}"
        else:
            url = posixpath.relpath(f"{COPIES}/{path}", posixpath.dirname(page.file.src_uri) or ".")
        return f"]({url}{match['anchor'] or ''})"

    return LINK.sub(rewrite, markdown)

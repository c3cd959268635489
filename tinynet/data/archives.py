"""What every dataset archive needs: an MD5 and a download that never leaves a file that
looks complete (Tiny ImageNet's zip, the CIFAR tarballs)."""
import hashlib
import os
import shutil
import urllib.error
import urllib.request

from tinynet.errors import TinynetError

# The file a generated (synthetic) dataset folder holds beside the real layout: its spec. It
# also tells an incomplete generated folder (re-run to generate it again) from an incomplete
# extracted one (extract the archive again).
SYNTHETIC_MARKER = "synthetic.json"


def md5sum(path, chunk=1 << 20):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def one_line(error):
    """An exception's text on one line: the command lines print errors as one line."""
    return " ".join(str(error).split())


def download(url, dest, by_hand):
    """Downloads ``url`` to ``dest`` through a ``.part`` file of its own (several processes,
    e.g. the workers of one cluster, may download at once; the last complete copy wins); a
    failure raises TinynetError ending with ``by_hand``, which says where to put the file
    instead."""
    part = f"{dest}.{os.getpid()}.part"
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        if os.path.exists(part):
            os.remove(part)
        raise TinynetError(f"could not download {url} ({one_line(getattr(e, 'reason', e))}); "
                           f"{by_hand}") from None
    os.replace(part, dest)


def first_few(names, limit=3):
    """``"a, b, c and 7 more"``: a long list of names kept to one readable line."""
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


def is_generated(root):
    """Whether ``root`` is a folder written by ``tinynet.data.synthetic``."""
    return os.path.isfile(os.path.join(root, SYNTHETIC_MARKER))


def incomplete(root, title, missing, refill):
    """The ``TinynetError`` for dataset folder ``root`` lacking ``missing`` (paths relative to
    it). ``refill`` says how to get the real files back; a generated folder is simply made
    again. Nothing is downloaded or extracted over such a folder: it may be the user's only
    copy, or one still being copied in."""
    n = len(missing)
    verb = "is" if n == 1 else "are"
    if is_generated(root):
        refill = "delete it and re-run to generate it again"
    return TinynetError(f"the {title} folder {root} is INCOMPLETE: {first_few(missing)} {verb} "
                        f"missing ({n} missing in all); {refill}")


def require_folder(path, holds):
    """Refuses a ``--data-dir`` that exists as a file (an archive passed instead of its folder,
    or a typo): nothing could be found in it, and a download into it would fail later."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise TinynetError(f"the data folder {path} is a file, not a folder: pass the folder "
                           f"that holds {holds} as --data-dir")

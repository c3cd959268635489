"""What every dataset archive needs: an MD5 and a download that never leaves a file that
looks complete (Tiny ImageNet's zip, the CIFAR tarballs)."""
import hashlib
import os
import shutil
import urllib.error
import urllib.request

from tinynet.errors import TinynetError


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

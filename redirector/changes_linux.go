package redirector

import (
	"os"

	"github.com/heron-registry/heron/layout"
	"golang.org/x/sys/unix"
)

// localFileSystems are the file systems on which a file mapped by two
// processes is one piece of memory, so that the server sees a writer's
// increment of the change counter at once: local disk file systems and
// tmpfs. Not network file systems (another machine's writes reach the
// page cache late, if at all) nor overlayfs (a writer's copy-up makes a
// new file under the server's mapping).
var localFileSystems = map[int64]string{
	0xEF53:     "ext2/3/4",
	0x58465342: "xfs",
	0x9123683E: "btrfs",
	0x01021994: "tmpfs",
	0xF2F52010: "f2fs",
	0x2FC12FC1: "zfs",
	0x5346544E: "ntfs3", // not a registry's usual home, but local
}

// mapChanges maps the tree's change counter read-only, if it is a
// regular file on a local file system, and returns it with its identity
// (device and inode only: the counter's writes change its times).
func (t *tree) mapChanges() (*layout.ChangeCounter, fileIdentity, error) {
	f, err := t.root.OpenFile(layout.OSKey(layout.ChangesKey()), os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fileIdentity{}, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fileIdentity{}, err
	}
	id := fileIdentity{dev: uint64(st.Dev), ino: uint64(st.Ino)}
	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &fs); err != nil {
		return nil, fileIdentity{}, err
	}
	if _, ok := localFileSystems[int64(fs.Type)]; !ok {
		return nil, fileIdentity{}, errCounterNotLocal
	}
	c, err := layout.MapChangeCounter(f, false)
	if err != nil {
		return nil, fileIdentity{}, err
	}
	return c, id, nil
}

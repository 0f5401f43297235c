package upstream

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"gopkg.in/yaml.v3"
)

// ErrReadOnly means the config file cannot be written (read-only file or
// file system, or no permission). The new config can still be applied in
// memory; it is lost at restart.
var ErrReadOnly = errors.New("upstream: config file is read-only")

// Marshal returns f as config.yml YAML.
func (f *File) Marshal() ([]byte, error) {
	return yaml.Marshal(f)
}

// WriteFile replaces the config file at path with f atomically: the YAML is
// written to a temporary file in the same directory, synced, and renamed
// over path, so a reader sees the old or the new file, never a part. The
// previous content is kept as path + ".bak". A file or directory that cannot
// be written yields an error wrapping ErrReadOnly. Comments of the previous
// file are not kept (they remain in the .bak copy).
func WriteFile(path string, f *File) error {
	data, err := f.Marshal()
	if err != nil {
		return fmt.Errorf("encoding config: %w", err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return classifyWriteErr(err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return classifyWriteErr(err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return classifyWriteErr(err)
	}
	if err := tmp.Close(); err != nil {
		return classifyWriteErr(err)
	}
	mode := fs.FileMode(0o644)
	if old, err := os.ReadFile(path); err == nil {
		if fi, err := os.Stat(path); err == nil {
			mode = fi.Mode().Perm()
			if mode&0o200 == 0 {
				return fmt.Errorf("%w: %s", ErrReadOnly, path)
			}
		}
		if err := os.WriteFile(path+".bak", old, mode); err != nil {
			return classifyWriteErr(err)
		}
	}
	if err := os.Chmod(tmp.Name(), mode); err != nil {
		return classifyWriteErr(err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return classifyWriteErr(err)
	}
	// Make the rename itself durable.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

func classifyWriteErr(err error) error {
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
		return fmt.Errorf("%w: %v", ErrReadOnly, err)
	}
	return fmt.Errorf("writing config: %w", err)
}

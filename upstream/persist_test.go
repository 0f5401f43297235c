package upstream

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWriteFileAtomicWithBackup(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yml")
	original := "# hand-written\ndefaultBackend: http://a:1\n"
	require.NoError(t, os.WriteFile(path, []byte(original), 0o640))

	f, err := ParseFile("config.yml", []byte("defaultBackend: http://b:2\nmappings:\n  - frontendHost: app.test\n    pathPrefix: /v2\n    backend: https://c\n"))
	require.NoError(t, err)
	require.NoError(t, WriteFile(path, f))

	back, err := LoadFile(path)
	require.NoError(t, err)
	assert.Equal(t, f, back, "what is written reads back the same")
	bak, err := os.ReadFile(path + ".bak")
	require.NoError(t, err)
	assert.Equal(t, original, string(bak))
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), fi.Mode().Perm(), "the file keeps its mode")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 2, "no temporary file is left behind")
}

func TestWriteFileReadOnly(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yml")
	require.NoError(t, os.WriteFile(path, []byte("defaultBackend: http://a:1\n"), 0o444))
	f, err := ParseFile("config.yml", []byte("defaultBackend: http://b:2\n"))
	require.NoError(t, err)
	err = WriteFile(path, f)
	assert.True(t, errors.Is(err, ErrReadOnly), "got %v", err)
	got, _ := os.ReadFile(path)
	assert.Equal(t, "defaultBackend: http://a:1\n", string(got))
}

func TestDiff(t *testing.T) {
	a := mustParse(t, "defaultBackend: http://a\nallowedOrigins: [https://x.test]\nmappings:\n  - frontendHost: app.test\n    backend: http://m\n")
	b := mustParse(t, "defaultBackend: http://b\nallowedOrigins: [https://y.test]\nmappings:\n  - frontendHost: app.test\n    pathPrefix: /v2\n    backend: http://m\n")
	assert.Equal(t, "defaultBackend http://a -> http://b; +allowedOrigin https://y.test; -allowedOrigin https://x.test; +mapping app.test/v2 -> http://m; -mapping app.test -> http://m", Diff(a, b))
	assert.Equal(t, "no change", Diff(a, a.Clone()))
}

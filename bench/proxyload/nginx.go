package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/apigetaway/getaway/bench/internal/procs"
)

// findNginx returns the nginx binary on PATH or at /usr/sbin/nginx (often
// not on a user's PATH), or "" when there is none.
func findNginx() string {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if fi, err := os.Stat("/usr/sbin/nginx"); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return "/usr/sbin/nginx"
	}
	return ""
}

// startNginx runs nginx as a plain reverse proxy from a free loopback port
// to backendAddr, with every file it writes in a temp dir, so it runs as
// root or not without touching /var. It returns the child, nginx's address
// and its version.
func startNginx(ctx context.Context, bin, backendAddr string) (*procs.Child, string, string, error) {
	// nginx -V prints the version and the configure arguments on stderr.
	info, _ := exec.Command(bin, "-V").CombinedOutput()
	version, _, _ := strings.Cut(string(info), "\n")
	version = strings.TrimPrefix(strings.TrimSpace(version), "nginx version: ")

	addr, err := procs.FreeAddr()
	if err != nil {
		return nil, "", "", err
	}
	dir, err := os.MkdirTemp("", "proxyload-nginx-")
	if err != nil {
		return nil, "", "", err
	}
	// Run as root, nginx's workers switch to an unprivileged user, which
	// must be able to reach the temp paths.
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, "", "", err
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(nginxConf(dir, backendAddr, addr, string(info))), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, "", "", err
	}

	args := []string{"-p", dir, "-c", conf}
	// -e (nginx >= 1.19.5) keeps even the startup log out of /var/log.
	if usage, _ := exec.Command(bin, "-h").CombinedOutput(); strings.Contains(string(usage), "-e filename") {
		args = append(args, "-e", filepath.Join(dir, "error.log"))
	}
	c, err := procs.Start("nginx", exec.Command(bin, args...))
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", "", err
	}
	c.OnStop(func() { os.RemoveAll(dir) })
	if err := c.WaitHTTP(ctx, "http://"+addr+"/api/bench", readyWithin); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		stopChild(c)
		return nil, "", "", fmt.Errorf("%w\nerror.log:\n%s", err, log)
	}
	return c, addr, version, nil
}

// nginxConf is the configuration of a plain reverse proxy: /api/x on addr
// goes to /x on backendAddr over pooled keep-alive connections. configure
// is nginx -V's output: temp paths are set only for the modules built in.
func nginxConf(dir, backendAddr, addr, configure string) string {
	path := func(name string) string { return `"` + filepath.Join(dir, name) + `"` }
	var temps strings.Builder
	fmt.Fprintf(&temps, "    client_body_temp_path %s;\n", path("client_body"))
	fmt.Fprintf(&temps, "    proxy_temp_path %s;\n", path("proxy"))
	for _, m := range []string{"fastcgi", "uwsgi", "scgi"} {
		if !strings.Contains(configure, "--without-http_"+m+"_module") {
			fmt.Fprintf(&temps, "    %s_temp_path %s;\n", m, path(m))
		}
	}
	return fmt.Sprintf(`daemon off;
master_process on;
worker_processes auto;
error_log %s;
pid %s;

events {
    worker_connections 4096;
}

http {
    access_log off;
%s
    upstream be {
        server %s;
        keepalive 128;
    }

    server {
        listen %s;
        location /api/ {
            proxy_pass http://be/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
`, path("error.log"), path("nginx.pid"), temps.String(), backendAddr, addr)
}

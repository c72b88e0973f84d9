// Package console holds the browser test of wasmpod's web console (/ui/ on the admin
// listener): headless Chromium, driven with go-rod, against real wasmpod processes. It lives in
// the deploy module so that the browser driver stays out of the main module's go.mod. Each
// step saves a screenshot under build/console/ at the repository root (CI keeps build/).
package console

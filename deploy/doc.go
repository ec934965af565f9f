// Package deploy holds the Dockerfile and Kubernetes manifests of rexinode.
// It has no code: it is a module of its own only so that its test can
// import the Kubernetes API types without adding them to the library's
// dependencies. The test decodes the manifests strictly, checks that they
// agree with each other and with the Dockerfile, and that every flag,
// subcommand and HTTP path they use exists in rexinode.
package deploy

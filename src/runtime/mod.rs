//! TEMP STUB
pub mod shim;
use std::io; use std::path::{Path, PathBuf};
use serde::{Serialize, Deserialize};
#[derive(Serialize, Deserialize, Clone, Debug, Default)] pub struct RootfsSpec { pub lower: Vec<PathBuf>, pub upper: PathBuf, pub work: PathBuf }
#[derive(Serialize, Deserialize, Clone, Debug, Default)] pub struct LogSpec { pub max_size: u64, pub max_file: u32 }
#[derive(Serialize, Deserialize, Clone, Debug)] pub struct BindFile { pub host: PathBuf, pub container: String, pub readonly: bool }
#[derive(Serialize, Deserialize, Clone, Debug)] pub enum NetworkMode { None, Host, Path(PathBuf) }
#[derive(Serialize, Deserialize, Clone, Debug)] pub struct ContainerSpec { pub id: String, pub hostname: String, pub args: Vec<String>, pub env: Vec<String>, pub cwd: String, pub user: String, pub tty: bool, pub open_stdin: bool, pub rootfs: RootfsSpec, pub readonly_rootfs: bool, pub cap_add: Vec<String>, pub cap_drop: Vec<String>, pub privileged: bool, pub memory: Option<i64>, pub memory_swap: Option<i64>, pub nano_cpus: Option<i64>, pub pids_limit: Option<i64>, pub init: bool, pub network: NetworkMode, pub cgroup_parent: String, pub log: LogSpec, pub files: Vec<BindFile>, pub stop_signal: i32 }
#[derive(Debug)] pub enum StartError { NotFound(String), CannotInvoke(String), Other(String) }
impl StartError { pub fn code(&self) -> i32 { 125 } }
impl std::fmt::Display for StartError { fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result { write!(f, "x") } }
pub struct ExitInfo { pub code: i32, pub oom_killed: bool, pub finished_at: String, pub error: String }
pub enum ContainerState { Running { pid: u32, started_at: String }, Exited(ExitInfo), NotStarted }
pub fn start(_d: &Path, _s: &ContainerSpec) -> Result<u32, StartError> { Err(StartError::Other("".into())) }
pub fn state(_d: &Path) -> ContainerState { ContainerState::NotStarted }
pub fn wait(_d: &Path) -> io::Result<ExitInfo> { Err(io::ErrorKind::Other.into()) }
pub fn kill(_d: &Path, _s: i32) -> io::Result<()> { Ok(()) }
pub fn resize(_d: &Path, _r: u16, _c: u16) -> io::Result<()> { Ok(()) }
pub fn cleanup(_d: &Path) {}
pub fn is_known_capability(_c: &str) -> bool { true }
pub fn cgroup_version() -> u32 { 1 }
pub struct Attach; impl Attach { pub fn write_stdin(&mut self, _b: &[u8]) -> io::Result<()> { Ok(()) } pub fn close_stdin(&mut self) -> io::Result<()> { Ok(()) } }
pub fn attach(_d: &Path) -> io::Result<Attach> { Ok(Attach) }
pub struct ProcessRow { pub uid: String, pub pid: u32, pub ppid: u32, pub c: String, pub stime: String, pub tty: String, pub time: String, pub cmd: String }
pub fn top(_d: &Path) -> io::Result<Vec<ProcessRow>> { Ok(vec![]) }
#[derive(Default)] pub struct Stats { pub memory_usage: u64, pub memory_limit: u64, pub cpu_total_ns: u64, pub pids: u64, pub pids_limit: u64 }
pub fn stats(_d: &Path) -> io::Result<Stats> { Ok(Stats::default()) }
pub struct ExecSpec { pub args: Vec<String>, pub env: Vec<String>, pub cwd: String, pub user: String, pub tty: bool, pub open_stdin: bool, pub privileged: bool, pub console_size: Option<(u16,u16)> }
pub struct ExecResizer; impl ExecResizer { pub fn resize(&self, _h: u16, _w: u16) -> io::Result<()> { Ok(()) } }
pub struct ExecProcess; impl ExecProcess { pub fn pid(&self) -> u32 {0} pub fn resizer(&self) -> Option<ExecResizer> { None } pub fn take_stdin(&mut self) -> Option<std::fs::File> { None } pub fn take_outputs(&mut self) -> Vec<(std::fs::File, crate::daemon::logs::Stream)> { vec![] } pub fn wait(&mut self) -> io::Result<i32> { Ok(0) } }
pub fn exec(_d: &Path, _s: &ExecSpec) -> Result<ExecProcess, StartError> { Ok(ExecProcess) }

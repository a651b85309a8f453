//! Hand-written `#[repr(C)]` mirrors of the PJRT C API structs we use
//! (`xla/pjrt/c/pjrt_c_api.h`, layouts of C API 0.113, which only appended
//! fields to those of 0.94 that ../shared/recipes verified against the 0.115
//! XLA CPU plugin), and the slot of each function in `PJRT_Api`.
//!
//! Every Args struct starts with `{size_t struct_size; PJRT_Extension_Base* extension_start}`.
//! We send `struct_size = size_of::<Args>()`: a plugin built against an older
//! header ignores the fields it does not know, a newer one zero-defaults the ones we lack.

#![allow(dead_code)]

use std::ffi::c_void;

pub type Raw = *mut c_void;
pub const NULL: Raw = std::ptr::null_mut();

/// A function of `PJRT_Api`: its slot (pointer at byte 40 + 8 * slot) and its C name.
#[derive(Clone, Copy, Debug)]
pub struct Fun {
    pub slot: usize,
    pub name: &'static str,
}

macro_rules! funs {
    ($($id:ident = $slot:expr, $name:literal;)*) => {
        $(pub const $id: Fun = Fun { slot: $slot, name: $name };)*
    };
}

funs! {
    ERROR_DESTROY = 0, "PJRT_Error_Destroy";
    ERROR_MESSAGE = 1, "PJRT_Error_Message";
    ERROR_GET_CODE = 2, "PJRT_Error_GetCode";
    PLUGIN_INITIALIZE = 3, "PJRT_Plugin_Initialize";
    PLUGIN_ATTRIBUTES = 4, "PJRT_Plugin_Attributes";
    EVENT_DESTROY = 5, "PJRT_Event_Destroy";
    EVENT_AWAIT = 8, "PJRT_Event_Await";
    CLIENT_CREATE = 10, "PJRT_Client_Create";
    CLIENT_DESTROY = 11, "PJRT_Client_Destroy";
    CLIENT_PLATFORM_NAME = 12, "PJRT_Client_PlatformName";
    CLIENT_PLATFORM_VERSION = 14, "PJRT_Client_PlatformVersion";
    CLIENT_ADDRESSABLE_DEVICES = 16, "PJRT_Client_AddressableDevices";
    CLIENT_COMPILE = 20, "PJRT_Client_Compile";
    CLIENT_BUFFER_FROM_HOST = 22, "PJRT_Client_BufferFromHostBuffer";
    EXECUTABLE_DESTROY = 40, "PJRT_Executable_Destroy";
    EXECUTABLE_NUM_PARTITIONS = 43, "PJRT_Executable_NumPartitions";
    EXECUTABLE_NUM_OUTPUTS = 44, "PJRT_Executable_NumOutputs";
    EXECUTABLE_SERIALIZE = 49, "PJRT_Executable_Serialize";
    LOADED_DESTROY = 50, "PJRT_LoadedExecutable_Destroy";
    LOADED_GET_EXECUTABLE = 51, "PJRT_LoadedExecutable_GetExecutable";
    LOADED_EXECUTE = 55, "PJRT_LoadedExecutable_Execute";
    EXECUTABLE_DESERIALIZE_AND_LOAD = 56, "PJRT_Executable_DeserializeAndLoad";
    BUFFER_DESTROY = 58, "PJRT_Buffer_Destroy";
    BUFFER_ELEMENT_TYPE = 59, "PJRT_Buffer_ElementType";
    BUFFER_DIMENSIONS = 60, "PJRT_Buffer_Dimensions";
    BUFFER_IS_DELETED = 68, "PJRT_Buffer_IsDeleted";
    BUFFER_TO_HOST = 70, "PJRT_Buffer_ToHostBuffer";
    EXECUTABLE_MEMORY_STATS = 96, "PJRT_Executable_GetCompiledMemoryStats";
}

/// Byte offsets inside `PJRT_Api`.
pub const API_FUNCTIONS_OFFSET: usize = 40;
pub const API_MAJOR_OFFSET: usize = 32;
pub const API_MINOR_OFFSET: usize = 36;

/// PJRT_Buffer_Type values.
pub const TYPE_PRED: i32 = 1;
pub const TYPE_S32: i32 = 4;
pub const TYPE_S64: i32 = 5;
pub const TYPE_U32: i32 = 8;
pub const TYPE_F32: i32 = 11;
pub const TYPE_F64: i32 = 12;
pub const TYPE_BF16: i32 = 13;
pub const TYPE_F16: i32 = 10;

/// PJRT_NamedValue_Type: kInt64.
pub const NAMED_INT64: i32 = 1;
/// PJRT_HostBufferSemantics_kImmutableOnlyDuringCall.
pub const IMMUTABLE_ONLY_DURING_CALL: i32 = 0;

#[repr(C)]
pub struct ErrorArgs {
    pub size: usize,
    pub ext: Raw,
    pub error: Raw,
}

#[repr(C)]
pub struct ErrorMessageArgs {
    pub size: usize,
    pub ext: Raw,
    pub error: Raw,
    pub message: *const u8,
    pub message_size: usize,
}

#[repr(C)]
pub struct ErrorGetCodeArgs {
    pub size: usize,
    pub ext: Raw,
    pub error: Raw,
    pub code: i32,
}

#[repr(C)]
pub struct PluginInitializeArgs {
    pub size: usize,
    pub ext: Raw,
}

#[repr(C)]
pub struct NamedValue {
    pub size: usize,
    pub ext: Raw,
    pub name: *const u8,
    pub name_size: usize,
    pub kind: i32,
    /// the union: string pointer, int64, int64 array pointer, float or bool
    pub value: u64,
    pub value_size: usize,
}

#[repr(C)]
pub struct PluginAttributesArgs {
    pub size: usize,
    pub ext: Raw,
    pub attributes: *const NamedValue,
    pub num_attributes: usize,
}

#[repr(C)]
pub struct EventArgs {
    pub size: usize,
    pub ext: Raw,
    pub event: Raw,
}

#[repr(C)]
pub struct ClientCreateArgs {
    pub size: usize,
    pub ext: Raw,
    pub create_options: *const NamedValue,
    pub num_options: usize,
    pub kv_get: Raw,
    pub kv_get_user: Raw,
    pub kv_put: Raw,
    pub kv_put_user: Raw,
    pub client: Raw,
    pub kv_try_get: Raw,
    pub kv_try_get_user: Raw,
}

#[repr(C)]
pub struct ClientArgs {
    pub size: usize,
    pub ext: Raw,
    pub client: Raw,
}

/// PlatformName / PlatformVersion.
#[repr(C)]
pub struct ClientStrArgs {
    pub size: usize,
    pub ext: Raw,
    pub client: Raw,
    pub s: *const u8,
    pub len: usize,
}

#[repr(C)]
pub struct ClientDevicesArgs {
    pub size: usize,
    pub ext: Raw,
    pub client: Raw,
    pub devices: *const Raw,
    pub num_devices: usize,
}

#[repr(C)]
pub struct Program {
    pub size: usize,
    pub ext: Raw,
    pub code: *const u8,
    pub code_size: usize,
    pub format: *const u8,
    pub format_size: usize,
}

#[repr(C)]
pub struct ClientCompileArgs {
    pub size: usize,
    pub ext: Raw,
    pub client: Raw,
    pub program: *const Program,
    pub compile_options: *const u8,
    pub compile_options_size: usize,
    pub executable: Raw,
}

#[repr(C)]
pub struct BufferFromHostArgs {
    pub size: usize,
    pub ext: Raw,
    pub client: Raw,
    pub data: *const c_void,
    pub kind: i32,
    pub dims: *const i64,
    pub num_dims: usize,
    pub byte_strides: *const i64,
    pub num_byte_strides: usize,
    pub semantics: i32,
    pub device: Raw,
    pub memory: Raw,
    pub device_layout: Raw,
    pub done_with_host_buffer: Raw,
    pub buffer: Raw,
}

#[repr(C)]
pub struct LoadedGetExecutableArgs {
    pub size: usize,
    pub ext: Raw,
    pub loaded: Raw,
    pub executable: Raw,
}

/// Executable_Destroy / LoadedExecutable_Destroy.
#[repr(C)]
pub struct ExecutableArgs {
    pub size: usize,
    pub ext: Raw,
    pub executable: Raw,
}

/// Executable_NumOutputs / Executable_NumPartitions.
#[repr(C)]
pub struct ExecutableCountArgs {
    pub size: usize,
    pub ext: Raw,
    pub executable: Raw,
    pub count: usize,
}

#[repr(C)]
pub struct ExecuteOptions {
    pub size: usize,
    pub ext: Raw,
    pub send_callbacks: Raw,
    pub recv_callbacks: Raw,
    pub num_send_ops: usize,
    pub num_recv_ops: usize,
    pub launch_id: i32,
    pub non_donatable_input_indices: *const i64,
    pub num_non_donatable_input_indices: usize,
    pub context: Raw,
    pub call_location: *const u8,
    pub num_tasks: usize,
    pub task_ids: Raw,
    pub incarnation_ids: Raw,
    pub multi_slice_config: Raw,
    pub use_major_to_minor_data_layout_for_callbacks: bool,
    pub hlo_output_callbacks: Raw,
    pub num_hlo_output_callbacks: usize,
}

#[repr(C)]
pub struct ExecuteArgs {
    pub size: usize,
    pub ext: Raw,
    pub executable: Raw,
    pub options: *const ExecuteOptions,
    pub argument_lists: *const *const Raw,
    pub num_devices: usize,
    pub num_args: usize,
    pub output_lists: *const *mut Raw,
    pub device_complete_events: *mut Raw,
    pub execute_device: Raw,
}

#[repr(C)]
pub struct BufferArgs {
    pub size: usize,
    pub ext: Raw,
    pub buffer: Raw,
}

#[repr(C)]
pub struct BufferElementTypeArgs {
    pub size: usize,
    pub ext: Raw,
    pub buffer: Raw,
    pub kind: i32,
}

#[repr(C)]
pub struct BufferDimensionsArgs {
    pub size: usize,
    pub ext: Raw,
    pub buffer: Raw,
    pub dims: *const i64,
    pub num_dims: usize,
}

#[repr(C)]
pub struct SerializeArgs {
    pub size: usize,
    pub ext: Raw,
    pub executable: Raw,
    pub bytes: *const u8,
    pub bytes_size: usize,
    pub serialized: Raw,
    pub deleter: Option<unsafe extern "C" fn(Raw)>,
}

/// PJRT_Executable_DeserializeAndLoad, with the fields newer headers append (zero: none).
#[repr(C)]
pub struct DeserializeArgs {
    pub size: usize,
    pub ext: Raw,
    pub client: Raw,
    pub bytes: *const u8,
    pub bytes_size: usize,
    pub loaded: Raw,
    pub compile_options: *const u8,
    pub compile_options_size: usize,
    pub load_options: Raw,
}

#[repr(C)]
pub struct BufferIsDeletedArgs {
    pub size: usize,
    pub ext: Raw,
    pub buffer: Raw,
    pub deleted: bool,
}

/// PJRT_Executable_GetCompiledMemoryStats, with the two fields newer headers append
/// (a plugin writes only the fields it knows; a larger struct is accepted).
#[repr(C)]
pub struct MemoryStatsArgs {
    pub size: usize,
    pub ext: Raw,
    pub executable: Raw,
    pub generated_code_size: i64,
    pub argument_size: i64,
    pub output_size: i64,
    pub alias_size: i64,
    pub temp_size: i64,
    pub host_generated_code_size: i64,
    pub host_argument_size: i64,
    pub host_output_size: i64,
    pub host_alias_size: i64,
    pub host_temp_size: i64,
    pub peak_memory: i64,
    pub total_size: i64,
}

#[repr(C)]
pub struct BufferToHostArgs {
    pub size: usize,
    pub ext: Raw,
    pub src: Raw,
    pub host_layout: Raw,
    pub dst: *mut c_void,
    pub dst_size: usize,
    pub event: Raw,
}

// The sizes the recipe verified (C API 0.94 layouts) and the 0.113 additions.
const _: () = {
    use std::mem::size_of;
    assert!(size_of::<ErrorMessageArgs>() == 40);
    assert!(size_of::<NamedValue>() == 56);
    assert!(size_of::<PluginAttributesArgs>() == 32);
    assert!(size_of::<ClientCreateArgs>() == 88);
    assert!(size_of::<ClientStrArgs>() == 40);
    assert!(size_of::<ClientDevicesArgs>() == 40);
    assert!(size_of::<Program>() == 48);
    assert!(size_of::<ClientCompileArgs>() == 56);
    assert!(size_of::<BufferFromHostArgs>() == 120);
    assert!(size_of::<LoadedGetExecutableArgs>() == 32);
    assert!(size_of::<ExecutableCountArgs>() == 32);
    assert!(size_of::<ExecuteOptions>() == 144);
    assert!(size_of::<ExecuteArgs>() == 80);
    assert!(size_of::<BufferToHostArgs>() == 56);
    assert!(size_of::<BufferIsDeletedArgs>() == 32);
    assert!(size_of::<SerializeArgs>() == 56);
    assert!(size_of::<DeserializeArgs>() == 72);
    assert!(size_of::<MemoryStatsArgs>() == 120);
};

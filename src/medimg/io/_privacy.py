"""Which DICOM attributes identify a person: the tag lists behind medimg's privacy rules.

Identifying attributes are refused by *tag* (whatever form the caller names them in),
never by a keyword list alone:

* the Patient module group ``(0010,xxxx)``;
* every attribute of the Basic Application Level Confidentiality Profile, PS3.15
  Annex E, Table E.1-1 (:data:`BASIC_PROFILE_TAGS`, with the repeating Curve Data
  ``(50xx,xxxx)`` and Overlay Data/Comments ``(60xx,3000)``/``(60xx,4000)`` groups);
* private attributes (odd groups), which may hold anything, names included.

Two documented exceptions keep the tables useful for research:

* :data:`RETAINED_CHARACTERISTICS`: what the profile's *Retain Patient
  Characteristics Option* (Table E.1-1, column "Rtn. Pat. Chars. Opt.", action K)
  keeps: age, sex, size, weight, ethnic group, pregnancy and smoking status;
* :data:`HASHED_TAGS`: identifiers replaced by an opaque salted hash
  (:func:`medimg.io.opaque_ids`), which keeps rows joinable as the profile's "U"
  (replace consistently) action does: Patient ID, Accession Number, Study ID and the
  UIDs the profile marks U.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "BASIC_PROFILE_TAGS",
    "HASHED_TAGS",
    "RETAINED_CHARACTERISTICS",
    "is_identifying",
    "parse_tag",
    "tag_name",
]

#: PS3.15 Annex E, Table E.1-1 "Application Level Confidentiality Profile Attributes"
#: (transcribed from the 2020 edition text): every attribute the Basic Profile removes
#: (X), empties (Z), replaces (D, U) or conditionally treats (X/Z, X/D, X/Z/D, Z/D,
#: X/Z/U*); the action is in each comment. The repeating groups are in
#: :func:`is_identifying`.
BASIC_PROFILE_TAGS: frozenset[int] = frozenset({
    0x00001000,  # AffectedSOPInstanceUID (X)
    0x00001001,  # RequestedSOPInstanceUID (U)
    0x00020003,  # MediaStorageSOPInstanceUID (U)
    0x00041511,  # ReferencedSOPInstanceUIDInFile (U)
    0x00080014,  # InstanceCreatorUID (U)
    0x00080015,  # InstanceCoercionDateTime (X)
    0x00080018,  # SOPInstanceUID (U)
    0x00080020,  # StudyDate (Z)
    0x00080021,  # SeriesDate (X/D)
    0x00080022,  # AcquisitionDate (X/Z)
    0x00080023,  # ContentDate (Z/D)
    0x00080024,  # OverlayDate (X)
    0x00080025,  # CurveDate (X)
    0x0008002A,  # AcquisitionDateTime (X/Z/D)
    0x00080030,  # StudyTime (Z)
    0x00080031,  # SeriesTime (X/D)
    0x00080032,  # AcquisitionTime (X/Z)
    0x00080033,  # ContentTime (Z/D)
    0x00080034,  # OverlayTime (X)
    0x00080035,  # CurveTime (X)
    0x00080050,  # AccessionNumber (Z)
    0x00080058,  # FailedSOPInstanceUIDList (U)
    0x00080080,  # InstitutionName (X/Z/D)
    0x00080081,  # InstitutionAddress (X)
    0x00080082,  # InstitutionCodeSequence (X/Z/D)
    0x00080090,  # ReferringPhysicianName (Z)
    0x00080092,  # ReferringPhysicianAddress (X)
    0x00080094,  # ReferringPhysicianTelephoneNumbers (X)
    0x00080096,  # ReferringPhysicianIdentificationSequence (X)
    0x0008009C,  # ConsultingPhysicianName (Z)
    0x0008009D,  # ConsultingPhysicianIdentificationSequence (X)
    0x00080201,  # TimezoneOffsetFromUTC (X)
    0x00081010,  # StationName (X/Z/D)
    0x00081030,  # StudyDescription (X)
    0x0008103E,  # SeriesDescription (X)
    0x00081040,  # InstitutionalDepartmentName (X)
    0x00081041,  # InstitutionalDepartmentTypeCodeSequence (X)
    0x00081048,  # PhysiciansOfRecord (X)
    0x00081049,  # PhysiciansOfRecordIdentificationSequence (X)
    0x00081050,  # PerformingPhysicianName (X)
    0x00081052,  # PerformingPhysicianIdentificationSequence (X)
    0x00081060,  # NameOfPhysiciansReadingStudy (X)
    0x00081062,  # PhysiciansReadingStudyIdentificationSequence (X)
    0x00081070,  # OperatorsName (X/Z/D)
    0x00081072,  # OperatorIdentificationSequence (X/D)
    0x00081080,  # AdmittingDiagnosesDescription (X)
    0x00081084,  # AdmittingDiagnosesCodeSequence (X)
    0x00081110,  # ReferencedStudySequence (X/Z)
    0x00081111,  # ReferencedPerformedProcedureStepSequence (X/Z/D)
    0x00081120,  # ReferencedPatientSequence (X)
    0x00081140,  # ReferencedImageSequence (X/Z/U*)
    0x00081155,  # ReferencedSOPInstanceUID (U)
    0x00081195,  # TransactionUID (U)
    0x00082111,  # DerivationDescription (X)
    0x00082112,  # SourceImageSequence (X/Z/U*)
    0x00083010,  # IrradiationEventUID (U)
    0x00084000,  # IdentifyingComments (X)
    0x00100010,  # PatientName (Z)
    0x00100020,  # PatientID (Z)
    0x00100021,  # IssuerOfPatientID (X)
    0x00100030,  # PatientBirthDate (Z)
    0x00100032,  # PatientBirthTime (X)
    0x00100040,  # PatientSex (Z)
    0x00100050,  # PatientInsurancePlanCodeSequence (X)
    0x00100101,  # PatientPrimaryLanguageCodeSequence (X)
    0x00100102,  # PatientPrimaryLanguageModifierCodeSequence (X)
    0x00101000,  # OtherPatientIDs (X)
    0x00101001,  # OtherPatientNames (X)
    0x00101002,  # OtherPatientIDsSequence (X)
    0x00101005,  # PatientBirthName (X)
    0x00101010,  # PatientAge (X)
    0x00101020,  # PatientSize (X)
    0x00101030,  # PatientWeight (X)
    0x00101040,  # PatientAddress (X)
    0x00101050,  # InsurancePlanIdentification (X)
    0x00101060,  # PatientMotherBirthName (X)
    0x00101080,  # MilitaryRank (X)
    0x00101081,  # BranchOfService (X)
    0x00101090,  # MedicalRecordLocator (X)
    0x00101100,  # ReferencedPatientPhotoSequence (X)
    0x00102000,  # MedicalAlerts (X)
    0x00102110,  # Allergies (X)
    0x00102150,  # CountryOfResidence (X)
    0x00102152,  # RegionOfResidence (X)
    0x00102154,  # PatientTelephoneNumbers (X)
    0x00102155,  # PatientTelecomInformation (X)
    0x00102160,  # EthnicGroup (X)
    0x00102180,  # Occupation (X)
    0x001021A0,  # SmokingStatus (X)
    0x001021B0,  # AdditionalPatientHistory (X)
    0x001021C0,  # PregnancyStatus (X)
    0x001021D0,  # LastMenstrualDate (X)
    0x001021F0,  # PatientReligiousPreference (X)
    0x00102203,  # PatientSexNeutered (X/Z)
    0x00102297,  # ResponsiblePerson (X)
    0x00102299,  # ResponsibleOrganization (X)
    0x00104000,  # PatientComments (X)
    0x00120010,  # ClinicalTrialSponsorName (D)
    0x00120020,  # ClinicalTrialProtocolID (D)
    0x00120021,  # ClinicalTrialProtocolName (Z)
    0x00120030,  # ClinicalTrialSiteID (Z)
    0x00120031,  # ClinicalTrialSiteName (Z)
    0x00120040,  # ClinicalTrialSubjectID (D)
    0x00120042,  # ClinicalTrialSubjectReadingID (D)
    0x00120050,  # ClinicalTrialTimePointID (Z)
    0x00120051,  # ClinicalTrialTimePointDescription (X)
    0x00120060,  # ClinicalTrialCoordinatingCenterName (Z)
    0x00120071,  # ClinicalTrialSeriesID (X)
    0x00120072,  # ClinicalTrialSeriesDescription (X)
    0x00120081,  # ClinicalTrialProtocolEthicsCommitteeName (D)
    0x00120082,  # ClinicalTrialProtocolEthicsCommitteeApprovalNumber (X)
    0x0016002B,  # MakerNote (X)
    0x0016004B,  # DeviceSettingDescription (X)
    0x0016004D,  # CameraOwnerName (X)
    0x0016004E,  # LensSpecification (X)
    0x0016004F,  # LensMake (X)
    0x00160050,  # LensModel (X)
    0x00160051,  # LensSerialNumber (X)
    0x00160070,  # GPSVersionID (X)
    0x00160071,  # GPSLatitudeRef (X)
    0x00160072,  # GPSLatitude (X)
    0x00160073,  # GPSLongitudeRef (X)
    0x00160074,  # GPSLongitude (X)
    0x00160075,  # GPSAltitudeRef (X)
    0x00160076,  # GPSAltitude (X)
    0x00160077,  # GPSTimeStamp (X)
    0x00160078,  # GPSSatellites (X)
    0x00160079,  # GPSStatus (X)
    0x0016007A,  # GPSMeasureMode (X)
    0x0016007B,  # GPSDOP (X)
    0x0016007C,  # GPSSpeedRef (X)
    0x0016007D,  # GPSSpeed (X)
    0x0016007E,  # GPSTrackRef (X)
    0x0016007F,  # GPSTrack (X)
    0x00160080,  # GPSImgDirectionRef (X)
    0x00160081,  # GPSImgDirection (X)
    0x00160082,  # GPSMapDatum (X)
    0x00160083,  # GPSDestLatitudeRef (X)
    0x00160084,  # GPSDestLatitude (X)
    0x00160085,  # GPSDestLongitudeRef (X)
    0x00160086,  # GPSDestLongitude (X)
    0x00160087,  # GPSDestBearingRef (X)
    0x00160088,  # GPSDestBearing (X)
    0x00160089,  # GPSDestDistanceRef (X)
    0x0016008A,  # GPSDestDistance (X)
    0x0016008B,  # GPSProcessingMethod (X)
    0x0016008C,  # GPSAreaInformation (X)
    0x0016008D,  # GPSDateStamp (X)
    0x0016008E,  # GPSDifferential (X)
    0x00180010,  # ContrastBolusAgent (Z/D)
    0x00181000,  # DeviceSerialNumber (X/Z/D)
    0x00181002,  # DeviceUID (U)
    0x00181004,  # PlateID (X)
    0x00181005,  # GeneratorID (X)
    0x00181007,  # CassetteID (X)
    0x00181008,  # GantryID (X)
    0x00181009,  # UniqueDeviceIdentifier (X)
    0x0018100A,  # UDISequence (X)
    0x0018100B,  # ManufacturerDeviceClassUID (U)
    0x00181030,  # ProtocolName (X/D)
    0x00181400,  # AcquisitionDeviceProcessingDescription (X/D)
    0x00182042,  # TargetUID (U)
    0x00184000,  # AcquisitionComments (X)
    0x0018700A,  # DetectorID (X/D)
    0x00189185,  # RespiratoryMotionCompensationTechniqueDescription (X)
    0x00189367,  # XRaySourceID (D)
    0x00189369,  # SourceStartDateTime (D)
    0x0018936A,  # SourceEndDateTime (D)
    0x00189371,  # XRayDetectorID (D)
    0x00189373,  # XRayDetectorLabel (X)
    0x0018937B,  # MultienergyAcquisitionDescription (X)
    0x0018937F,  # DecompositionDescription (X)
    0x00189424,  # AcquisitionProtocolDescription (X)
    0x00189516,  # StartAcquisitionDateTime (X/D)
    0x00189517,  # EndAcquisitionDateTime (X/D)
    0x0018A003,  # ContributionDescription (X)
    0x0020000D,  # StudyInstanceUID (U)
    0x0020000E,  # SeriesInstanceUID (U)
    0x00200010,  # StudyID (Z)
    0x00200052,  # FrameOfReferenceUID (U)
    0x00200200,  # SynchronizationFrameOfReferenceUID (U)
    0x00203401,  # ModifyingDeviceID (X)
    0x00203406,  # ModifiedImageDescription (X)
    0x00204000,  # ImageComments (X)
    0x00209158,  # FrameComments (X)
    0x00209161,  # ConcatenationUID (U)
    0x00209164,  # DimensionOrganizationUID (U)
    0x00281199,  # PaletteColorLookupTableUID (U)
    0x00281214,  # LargePaletteColorLookupTableUID (U)
    0x00284000,  # ImagePresentationComments (X)
    0x00320012,  # StudyIDIssuer (X)
    0x00321020,  # ScheduledStudyLocation (X)
    0x00321021,  # ScheduledStudyLocationAETitle (X)
    0x00321030,  # ReasonForStudy (X)
    0x00321032,  # RequestingPhysician (X)
    0x00321033,  # RequestingService (X)
    0x00321060,  # RequestedProcedureDescription (X/Z)
    0x00321066,  # ReasonForVisit (X)
    0x00321067,  # ReasonForVisitCodeSequence (X)
    0x00321070,  # RequestedContrastAgent (X)
    0x00324000,  # StudyComments (X)
    0x00340001,  # FlowIdentifierSequence (D)
    0x00340002,  # FlowIdentifier (D)
    0x00340005,  # SourceIdentifier (D)
    0x00340007,  # FrameOriginTimestamp (D)
    0x00380004,  # ReferencedPatientAliasSequence (X)
    0x00380010,  # AdmissionID (X)
    0x00380011,  # IssuerOfAdmissionID (X)
    0x00380014,  # IssuerOfAdmissionIDSequence (X)
    0x0038001E,  # ScheduledPatientInstitutionResidence (X)
    0x00380020,  # AdmittingDate (X)
    0x00380021,  # AdmittingTime (X)
    0x00380040,  # DischargeDiagnosisDescription (X)
    0x00380050,  # SpecialNeeds (X)
    0x00380060,  # ServiceEpisodeID (X)
    0x00380061,  # IssuerOfServiceEpisodeID (X)
    0x00380062,  # ServiceEpisodeDescription (X)
    0x00380064,  # IssuerOfServiceEpisodeIDSequence (X)
    0x00380300,  # CurrentPatientLocation (X)
    0x00380400,  # PatientInstitutionResidence (X)
    0x00380500,  # PatientState (X)
    0x00384000,  # VisitComments (X)
    0x003A0310,  # MultiplexGroupUID (U)
    0x003A0314,  # ImpedanceMeasurementDateTime (D)
    0x00400001,  # ScheduledStationAETitle (X)
    0x00400002,  # ScheduledProcedureStepStartDate (X)
    0x00400003,  # ScheduledProcedureStepStartTime (X)
    0x00400004,  # ScheduledProcedureStepEndDate (X)
    0x00400005,  # ScheduledProcedureStepEndTime (X)
    0x00400006,  # ScheduledPerformingPhysicianName (X)
    0x00400007,  # ScheduledProcedureStepDescription (X)
    0x0040000B,  # ScheduledPerformingPhysicianIdentificationSequence (X)
    0x00400010,  # ScheduledStationName (X)
    0x00400011,  # ScheduledProcedureStepLocation (X)
    0x00400012,  # PreMedication (X)
    0x00400241,  # PerformedStationAETitle (X)
    0x00400242,  # PerformedStationName (X)
    0x00400243,  # PerformedLocation (X)
    0x00400244,  # PerformedProcedureStepStartDate (X)
    0x00400245,  # PerformedProcedureStepStartTime (X)
    0x00400250,  # PerformedProcedureStepEndDate (X)
    0x00400251,  # PerformedProcedureStepEndTime (X)
    0x00400253,  # PerformedProcedureStepID (X)
    0x00400254,  # PerformedProcedureStepDescription (X)
    0x00400275,  # RequestAttributesSequence (X)
    0x00400280,  # CommentsOnThePerformedProcedureStep (X)
    0x0040050A,  # SpecimenAccessionNumber (X)
    0x00400512,  # ContainerIdentifier (D)
    0x00400513,  # IssuerOfTheContainerIdentifierSequence (Z)
    0x0040051A,  # ContainerDescription (X)
    0x00400551,  # SpecimenIdentifier (D)
    0x00400554,  # SpecimenUID (U)
    0x00400555,  # AcquisitionContextSequence (X/Z)
    0x00400562,  # IssuerOfTheSpecimenIdentifierSequence (Z)
    0x00400600,  # SpecimenShortDescription (X)
    0x00400602,  # SpecimenDetailedDescription (X)
    0x00400610,  # SpecimenPreparationSequence (Z)
    0x004006FA,  # SlideIdentifier (X)
    0x00401001,  # RequestedProcedureID (X)
    0x00401002,  # ReasonForTheRequestedProcedure (X)
    0x00401004,  # PatientTransportArrangements (X)
    0x00401005,  # RequestedProcedureLocation (X)
    0x0040100A,  # ReasonForRequestedProcedureCodeSequence (X)
    0x00401010,  # NamesOfIntendedRecipientsOfResults (X)
    0x00401011,  # IntendedRecipientsOfResultsIdentificationSequence (X)
    0x00401101,  # PersonIdentificationCodeSequence (D)
    0x00401102,  # PersonAddress (X)
    0x00401103,  # PersonTelephoneNumbers (X)
    0x00401104,  # PersonTelecomInformation (X)
    0x00401400,  # RequestedProcedureComments (X)
    0x00402001,  # ReasonForTheImagingServiceRequest (X)
    0x00402008,  # OrderEnteredBy (X)
    0x00402009,  # OrderEntererLocation (X)
    0x00402010,  # OrderCallbackPhoneNumber (X)
    0x00402011,  # OrderCallbackTelecomInformation (X)
    0x00402016,  # PlacerOrderNumberImagingServiceRequest (Z)
    0x00402017,  # FillerOrderNumberImagingServiceRequest (Z)
    0x00402400,  # ImagingServiceRequestComments (X)
    0x00403001,  # ConfidentialityConstraintOnPatientDataDescription (X)
    0x00404005,  # ScheduledProcedureStepStartDateTime (X)
    0x00404008,  # ScheduledProcedureStepExpirationDateTime (X)
    0x00404010,  # ScheduledProcedureStepModificationDateTime (X)
    0x00404011,  # ExpectedCompletionDateTime (X)
    0x00404023,  # ReferencedGeneralPurposeScheduledProcedureStepTransactionUID (U)
    0x00404025,  # ScheduledStationNameCodeSequence (X)
    0x00404027,  # ScheduledStationGeographicLocationCodeSequence (X)
    0x00404028,  # PerformedStationNameCodeSequence (X)
    0x00404030,  # PerformedStationGeographicLocationCodeSequence (X)
    0x00404034,  # ScheduledHumanPerformersSequence (X)
    0x00404035,  # ActualHumanPerformersSequence (X)
    0x00404036,  # HumanPerformerOrganization (X)
    0x00404037,  # HumanPerformerName (X)
    0x00404050,  # PerformedProcedureStepStartDateTime (X)
    0x00404051,  # PerformedProcedureStepEndDateTime (X)
    0x00404052,  # ProcedureStepCancellationDateTime (X)
    0x0040A027,  # VerifyingOrganization (D)
    0x0040A073,  # VerifyingObserverSequence (D)
    0x0040A075,  # VerifyingObserverName (D)
    0x0040A078,  # AuthorObserverSequence (X)
    0x0040A07A,  # ParticipantSequence (X)
    0x0040A07C,  # CustodialOrganizationSequence (X)
    0x0040A088,  # VerifyingObserverIdentificationCodeSequence (Z)
    0x0040A123,  # PersonName (D)
    0x0040A124,  # UID (U)
    0x0040A171,  # ObservationUID (U)
    0x0040A172,  # ReferencedObservationUIDTrial (U)
    0x0040A192,  # ObservationDateTrial (X)
    0x0040A193,  # ObservationTimeTrial (X)
    0x0040A307,  # CurrentObserverTrial (X)
    0x0040A352,  # VerbalSourceTrial (X)
    0x0040A353,  # AddressTrial (X)
    0x0040A354,  # TelephoneNumberTrial (X)
    0x0040A358,  # VerbalSourceIdentifierCodeSequenceTrial (X)
    0x0040A402,  # ObservationSubjectUIDTrial (U)
    0x0040A730,  # ContentSequence (D)
    0x0040DB0C,  # TemplateExtensionOrganizationUID (U)
    0x0040DB0D,  # TemplateExtensionCreatorUID (U)
    0x0050001B,  # ContainerComponentID (X)
    0x00500020,  # DeviceDescription (X)
    0x00500021,  # LongDeviceDescription (X)
    0x00620021,  # TrackingUID (U)
    0x00700001,  # GraphicAnnotationSequence (D)
    0x00700084,  # ContentCreatorName (Z/D)
    0x00700086,  # ContentCreatorIdentificationCodeSequence (X)
    0x0070031A,  # FiducialUID (U)
    0x00701101,  # PresentationDisplayCollectionUID (U)
    0x00701102,  # PresentationSequenceCollectionUID (U)
    0x00880140,  # StorageMediaFileSetUID (U)
    0x00880200,  # IconImageSequence (X)
    0x00880904,  # TopicTitle (X)
    0x00880906,  # TopicSubject (X)
    0x00880910,  # TopicAuthor (X)
    0x00880912,  # TopicKeywords (X)
    0x04000100,  # DigitalSignatureUID (U)
    0x04000402,  # ReferencedDigitalSignatureSequence (X)
    0x04000403,  # ReferencedSOPInstanceMACSequence (X)
    0x04000404,  # MAC (X)
    0x04000550,  # ModifiedAttributesSequence (X)
    0x04000561,  # OriginalAttributesSequence (X)
    0x04000600,  # InstanceOriginStatus (X)
    0x20300020,  # TextString (X)
    0x22000002,  # LabelText (X/Z)
    0x22000005,  # BarcodeValue (X/Z)
    0x30060024,  # ReferencedFrameOfReferenceUID (U)
    0x300600C2,  # RelatedFrameOfReferenceUID (U)
    0x30080054,  # FirstTreatmentDate (X/D)
    0x30080056,  # MostRecentTreatmentDate (X/D)
    0x30080105,  # SourceSerialNumber (X/Z)
    0x30080250,  # TreatmentDate (X/D)
    0x30080251,  # TreatmentTime (X/D)
    0x300A0002,  # RTPlanLabel (D)
    0x300A0003,  # RTPlanName (X)
    0x300A0004,  # RTPlanDescription (X)
    0x300A0006,  # RTPlanDate (X/D)
    0x300A0007,  # RTPlanTime (X/D)
    0x300A000E,  # PrescriptionDescription (X)
    0x300A0013,  # DoseReferenceUID (U)
    0x300A0016,  # DoseReferenceDescription (X)
    0x300A0072,  # FractionGroupDescription (X)
    0x300A0083,  # ReferencedDoseReferenceUID (U)
    0x300A00B2,  # TreatmentMachineName (X)
    0x300A00C3,  # BeamDescription (X)
    0x300A00DD,  # BolusDescription (X)
    0x300A0196,  # FixationDeviceDescription (X)
    0x300A01A6,  # ShieldingDeviceDescription (X)
    0x300A01B2,  # SetupTechniqueDescription (X)
    0x300A0216,  # SourceManufacturer (X)
    0x300A02EB,  # CompensatorDescription (X)
    0x300A0608,  # TreatmentPositionGroupLabel (D)
    0x300A0609,  # TreatmentPositionGroupUID (U)
    0x300A0611,  # RTAccessoryHolderSlotID (Z)
    0x300A0615,  # RTAccessoryDeviceSlotID (Z)
    0x300A0619,  # RadiationDoseIdentificationLabel (D)
    0x300A0623,  # RadiationDoseInVivoMeasurementLabel (D)
    0x300A062A,  # RTToleranceSetLabel (D)
    0x300A0650,  # PatientSetupUID (U)
    0x300A0676,  # EquipmentFrameOfReferenceDescription (X)
    0x300A067C,  # RadiationGenerationModeLabel (D)
    0x300A067D,  # RadiationGenerationModeDescription (Z)
    0x300A0700,  # TreatmentSessionUID (U)
    0x300A0734,  # TreatmentToleranceViolationDescription (D)
    0x300A0736,  # TreatmentToleranceViolationDateTime (D)
    0x300A073A,  # RecordedRTControlPointDateTime (D)
    0x300A0741,  # InterlockDateTime (D)
    0x300A0742,  # InterlockDescription (D)
    0x300A0760,  # OverrideDateTime (D)
    0x300A0783,  # InterlockOriginDescription (D)
    0x300C0113,  # ReasonForOmissionDescription (X)
    0x300E0008,  # ReviewerName (X/Z)
    0x30100006,  # ConceptualVolumeUID (U)
    0x3010000B,  # ReferencedConceptualVolumeUID (U)
    0x3010000F,  # ConceptualVolumeCombinationDescription (Z)
    0x30100013,  # ConstituentConceptualVolumeUID (U)
    0x30100015,  # SourceConceptualVolumeUID (U)
    0x30100017,  # ConceptualVolumeDescription (Z)
    0x3010001B,  # DeviceAlternateIdentifier (Z)
    0x3010002D,  # DeviceLabel (D)
    0x30100031,  # ReferencedFiducialsUID (U)
    0x30100033,  # UserContentLabel (D)
    0x30100034,  # UserContentLongLabel (D)
    0x30100035,  # EntityLabel (D)
    0x30100036,  # EntityName (X)
    0x30100037,  # EntityDescription (X)
    0x30100038,  # EntityLongLabel (D)
    0x3010003B,  # RTTreatmentPhaseUID (U)
    0x30100043,  # ManufacturerDeviceIdentifier (Z)
    0x3010004C,  # IntendedPhaseStartDate (X/D)
    0x3010004D,  # IntendedPhaseEndDate (X/D)
    0x30100054,  # RTPrescriptionLabel (D)
    0x30100056,  # RTTreatmentApproachLabel (X/D)
    0x3010005A,  # RTPhysicianIntentNarrative (Z)
    0x3010005C,  # ReasonForSuperseding (Z)
    0x30100061,  # PriorTreatmentDoseDescription (X)
    0x3010006E,  # DosimetricObjectiveUID (U)
    0x3010006F,  # ReferencedDosimetricObjectiveUID (U)
    0x30100077,  # TreatmentSite (D)
    0x3010007A,  # TreatmentTechniqueNotes (Z)
    0x3010007B,  # PrescriptionNotes (Z)
    0x3010007F,  # FractionationNotes (Z)
    0x30100081,  # PrescriptionNotesSequence (Z)
    0x40000010,  # Arbitrary (X)
    0x40004000,  # TextComments (X)
    0x40080042,  # ResultsIDIssuer (X)
    0x40080102,  # InterpretationRecorder (X)
    0x4008010A,  # InterpretationTranscriber (X)
    0x4008010B,  # InterpretationText (X)
    0x4008010C,  # InterpretationAuthor (X)
    0x40080111,  # InterpretationApproverSequence (X)
    0x40080114,  # PhysicianApprovingInterpretation (X)
    0x40080115,  # InterpretationDiagnosisDescription (X)
    0x40080118,  # ResultsDistributionListSequence (X)
    0x40080119,  # DistributionName (X)
    0x4008011A,  # DistributionAddress (X)
    0x40080202,  # InterpretationIDIssuer (X)
    0x40080300,  # Impressions (X)
    0x40084000,  # ResultsComments (X)
    0xFFFAFFFA,  # DigitalSignaturesSequence (X)
    0xFFFCFFFC,  # DataSetTrailingPadding (X)
})

#: Kept under the Retain Patient Characteristics Option (Table E.1-1, action K).
RETAINED_CHARACTERISTICS: frozenset[int] = frozenset({
    0x00100040,  # PatientSex
    0x00101010,  # PatientAge
    0x00101020,  # PatientSize
    0x00101030,  # PatientWeight
    0x00102160,  # EthnicGroup
    0x001021A0,  # SmokingStatus
    0x001021C0,  # PregnancyStatus
    0x00102203,  # PatientSexNeutered
})

#: Replaced by an opaque hash instead of being refused: Patient ID, Accession Number,
#: Study ID, and the UIDs Table E.1-1 marks U (replace with a consistent value).
HASHED_TAGS: frozenset[int] = frozenset({
    0x00100020,  # PatientID
    0x00080050,  # AccessionNumber
    0x00200010,  # StudyID
    0x00001001,  # RequestedSOPInstanceUID
    0x00020003,  # MediaStorageSOPInstanceUID
    0x00041511,  # ReferencedSOPInstanceUIDInFile
    0x00080014,  # InstanceCreatorUID
    0x00080018,  # SOPInstanceUID
    0x00080058,  # FailedSOPInstanceUIDList
    0x00081155,  # ReferencedSOPInstanceUID
    0x00081195,  # TransactionUID
    0x00083010,  # IrradiationEventUID
    0x00181002,  # DeviceUID
    0x0018100B,  # ManufacturerDeviceClassUID
    0x00182042,  # TargetUID
    0x0020000D,  # StudyInstanceUID
    0x0020000E,  # SeriesInstanceUID
    0x00200052,  # FrameOfReferenceUID
    0x00200200,  # SynchronizationFrameOfReferenceUID
    0x00209161,  # ConcatenationUID
    0x00209164,  # DimensionOrganizationUID
    0x00281199,  # PaletteColorLookupTableUID
    0x00281214,  # LargePaletteColorLookupTableUID
    0x003A0310,  # MultiplexGroupUID
    0x00400554,  # SpecimenUID
    0x00404023,  # ReferencedGeneralPurposeScheduledProcedureStepTransactionUID
    0x0040A124,  # UID
    0x0040A171,  # ObservationUID
    0x0040A172,  # ReferencedObservationUIDTrial
    0x0040A402,  # ObservationSubjectUIDTrial
    0x0040DB0C,  # TemplateExtensionOrganizationUID
    0x0040DB0D,  # TemplateExtensionCreatorUID
    0x00620021,  # TrackingUID
    0x0070031A,  # FiducialUID
    0x00701101,  # PresentationDisplayCollectionUID
    0x00701102,  # PresentationSequenceCollectionUID
    0x00880140,  # StorageMediaFileSetUID
    0x04000100,  # DigitalSignatureUID
    0x30060024,  # ReferencedFrameOfReferenceUID
    0x300600C2,  # RelatedFrameOfReferenceUID
    0x300A0013,  # DoseReferenceUID
    0x300A0083,  # ReferencedDoseReferenceUID
    0x300A0609,  # TreatmentPositionGroupUID
    0x300A0650,  # PatientSetupUID
    0x300A0700,  # TreatmentSessionUID
    0x30100006,  # ConceptualVolumeUID
    0x3010000B,  # ReferencedConceptualVolumeUID
    0x30100013,  # ConstituentConceptualVolumeUID
    0x30100015,  # SourceConceptualVolumeUID
    0x30100031,  # ReferencedFiducialsUID
    0x3010003B,  # RTTreatmentPhaseUID
    0x3010006E,  # DosimetricObjectiveUID
    0x3010006F,  # ReferencedDosimetricObjectiveUID
})

_TAG_TEXT = re.compile(r"^\(?\s*(?:0x)?([0-9A-Fa-f]{4})\s*,\s*(?:0x)?([0-9A-Fa-f]{4})\s*\)?$")
_TAG_HEX = re.compile(r"^(?:0x)?([0-9A-Fa-f]{8})$")


def parse_tag(field: Any) -> int:
    """The tag (as an int ``0xGGGGEEEE``) for a field named in any common form.

    Accepts a keyword (``"PatientName"``), an int (``0x00100010``), a
    ``pydicom.tag.BaseTag``, a ``(group, element)`` tuple, or text such as
    ``"(0010,0010)"``, ``"0010,0010"``, ``"00100010"`` or ``"0x00100010"``.

    Raises
    ------
    ValueError
        Not a DICOM keyword or tag.
    """
    from pydicom.datadict import tag_for_keyword

    if isinstance(field, bool):
        raise ValueError(f"{field!r} is not a DICOM keyword or tag")
    if isinstance(field, int):
        value = int(field)
    elif isinstance(field, tuple | list) and len(field) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in field):
        group, element = field
        if not (0 <= group <= 0xFFFF and 0 <= element <= 0xFFFF):
            raise ValueError(f"{field!r} is not a DICOM (group, element) pair")
        value = (group << 16) | element
    elif isinstance(field, str):
        text = field.strip()
        keyword_tag = tag_for_keyword(text)
        if keyword_tag is not None:
            return int(keyword_tag)
        match = _TAG_TEXT.match(text)
        if match:
            return int(match.group(1) + match.group(2), 16)
        match = _TAG_HEX.match(text)
        if match:
            return int(match.group(1), 16)
        raise ValueError(f"{field!r} is not a DICOM keyword or tag")
    else:
        raise ValueError(f"{field!r} is not a DICOM keyword or tag")
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{field!r} is not a DICOM tag (32 bits)")
    return value


def is_identifying(tag: int) -> bool:
    """True for a tag that may identify a person (see the module docstring).

    Retained characteristics and hashed identifiers count as identifying here: the
    callers decide whether to keep, hash or refuse them.
    """
    tag = int(tag)
    group, element = tag >> 16, tag & 0xFFFF
    if group % 2 == 1:  # private data elements and private creators
        return True
    if group == 0x0010:  # the Patient module
        return True
    if 0x5000 <= group <= 0x50FF:  # Curve Data (retired repeating group)
        return True
    if 0x6000 <= group <= 0x60FF and element in (0x3000, 0x4000):  # Overlay Data, Comments
        return True
    return tag in BASIC_PROFILE_TAGS


def tag_name(tag: int) -> str:
    """``Keyword (gggg,eeee)`` for messages (``(gggg,eeee)`` alone when unknown)."""
    from pydicom.datadict import keyword_for_tag

    text = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    keyword = keyword_for_tag(tag)
    return f"{keyword} {text}" if keyword else text
